/* linear.h - fully connected layer, PyTorch layout W [DO,DI]. Activations are feature-major:
 * a batch of B rows of width DI is stored as xT [DI,B], so every inner loop runs over the
 * batch with unit stride and vectorises without reassociating any sum. */
#ifndef CF_LINEAR_H
#define CF_LINEAR_H
#include <stdint.h>

/* outT[DO,B] = W [DO,DI] @ xT [DI,B] + bias[DO] (bias may be NULL); the sum over DI runs in
 * order i = 0..DI-1 for each output. reference: torch.nn.Linear (y = x W^T + b) */
void cf_linear_forward(float *outT, const float *xT, const float *W, const float *bias,
                       int64_t B, int64_t DI, int64_t DO);

/* accumulates into dxT [DI,B] (may be NULL), dW [DO,DI] and dbias [DO] (may be NULL) given
 * doutT [DO,B] and the forward input xT [DI,B]:
 *   dW[o,i] += sum_b doutT[o,b] xT[i,b];  dbias[o] += sum_b doutT[o,b];
 *   dxT[i,b] += sum_o W[o,i] doutT[o,b] */
void cf_linear_backward(float *dxT, float *dW, float *dbias, const float *doutT,
                        const float *xT, const float *W, int64_t B, int64_t DI, int64_t DO);

#endif

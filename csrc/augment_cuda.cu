// The clip augmentation on the GPU: the per-output-pixel math of augment_pixel.h (the CPU kernel's),
// one thread block per clip. Compiled at run time with NVRTC (echoclr/pipeline/cuda_augment.py, through
// cupy.RawModule) with --fmad=false, so its sums round as the CPU kernel's do.
//
// Pass 1 computes every warped pixel of the clip and reduces its min and max; pass 2 computes them again
// (cheaper than a T*H*W scratch buffer per clip) and writes the normalised values.
#include "augment_pixel.h"

namespace {

constexpr int kThreads = 256;  // the launch's block size (cuda_augment.py passes the same)

__device__ inline echoclr_u8 warped_pixel(const echoclr_u8* clip, const int* order, int h, int w, int dy, int dx,
                                          bool flip, bool rotate, const echoclr::pixel::Rotation& rot, long long p) {
    const long long plane = static_cast<long long>(h) * w;
    const int f = static_cast<int>(p / plane);
    const int o = static_cast<int>(p % plane);
    const echoclr_u8* frame = clip + order[f] * plane;
    return echoclr::pixel::warped(frame, h, w, dy, dx, flip, rotate, rot, o / w, o % w);
}

}  // namespace

// clips uint8 (N, T, H, W); orders int32 (N, T); shifts int32 (N, 2) as (dy, dx); flips int32 (N,);
// angles float32 (N,) degrees, 0 = none; mean/std float32 (3,) or unused; out float32 (N, T, H, W, C).
extern "C" __global__ void __launch_bounds__(kThreads)
augment_clips(const echoclr_u8* clips, const int* orders, const int* shifts, const int* flips, const float* angles,
              float* out, int t, int h, int w, int channels, float min_range, int standardise, const float* mean,
              const float* std) {
    const int n = blockIdx.x;
    const long long size = static_cast<long long>(t) * h * w;
    const echoclr_u8* clip = clips + n * size;
    const int* order = orders + n * t;
    const int dy = shifts[2 * n], dx = shifts[2 * n + 1];
    const bool flip = flips[n] != 0;
    const float angle = angles[n];
    const bool rotate = angle != 0.0f;
    const echoclr::pixel::Rotation rot = echoclr::pixel::rotation(h, w, static_cast<double>(angle));

    // pass 1: min and max of the warped clip
    int lo = 255, hi = 0;
    for (long long p = threadIdx.x; p < size; p += blockDim.x) {
        const int u = warped_pixel(clip, order, h, w, dy, dx, flip, rotate, rot, p);
        lo = u < lo ? u : lo;
        hi = u > hi ? u : hi;
    }
    __shared__ int block_lo, block_hi;
    if (threadIdx.x == 0) {
        block_lo = 255;
        block_hi = 0;
    }
    __syncthreads();
    atomicMin(&block_lo, lo);
    atomicMax(&block_hi, hi);
    __syncthreads();

    // pass 2: normalised values, channels interleaved
    const float lo32 = static_cast<float>(block_lo);
    const float scale = echoclr::pixel::minmax_scale(lo32, static_cast<float>(block_hi), min_range);
    float* dst = out + n * size * channels;
    for (long long p = threadIdx.x; p < size; p += blockDim.x) {
        const float x = echoclr::pixel::minmax(warped_pixel(clip, order, h, w, dy, dx, flip, rotate, rot, p), lo32,
                                               scale);
        if (channels == 1) {
            dst[p] = x;
            continue;
        }
        for (int c = 0; c < 3; ++c)
            dst[3 * p + c] = standardise ? echoclr::pixel::standardise(x, mean[c], std[c]) : x;
    }
}

// The per-output-pixel math of the clip augmentation, for host (csrc/augment.cpp) and device
// (csrc/augment_cuda.cu, compiled at run time with NVRTC through cupy) alike.
//
// One output pixel (frame f, row y, column x) of a clip, as echoclr/pipeline/reference.py defines it:
//   moved = rotate(flip(shift(clip[order[f]])))  uint8, rounded half to even
//   out   = (moved - lo) / max(hi - lo, min_range)  float32, lo/hi over the whole clip
//   out_c = (out - mean[c]) / std[c]  with standardisation
// The rotation samples bilinearly with zero fill, at the positions
// scipy.ndimage.affine_transform(order=1, mode="grid-constant") computes (double precision),
// and sums the four weighted neighbours in float, in this order: w00 a + w01 b + w10 c + w11 d.
// Callers must not contract that sum into fused multiply-adds (NVRTC: --fmad=false; baseline
// x86-64 and aarch64 GCC builds of the extension have no contraction across these statements
// either), so host and device round identically.
//
// No standard headers under NVRTC: only builtins and the types below.
#pragma once

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define ECHOCLR_HD __host__ __device__
#else
#define ECHOCLR_HD
#endif

#if defined(__CUDACC_RTC__)
typedef unsigned char echoclr_u8;
#define ECHOCLR_COS cos
#define ECHOCLR_SIN sin
#else
#include <cmath>
#include <cstdint>
typedef uint8_t echoclr_u8;
#define ECHOCLR_COS std::cos
#define ECHOCLR_SIN std::sin
#endif

namespace echoclr {
namespace pixel {

// Where a rotated output pixel samples: in = M @ out + offset about the frame centre
// ((h-1)/2, (w-1)/2), counter-clockwise on screen for positive angles.
struct Rotation {
    double c, s, oy, ox;
};

ECHOCLR_HD inline Rotation rotation(int h, int w, double angle_deg) {
    const double theta = angle_deg * 3.14159265358979323846 / 180.0;
    const double c = ECHOCLR_COS(theta), s = ECHOCLR_SIN(theta);
    const double cy = (h - 1) / 2.0, cx = (w - 1) / 2.0;
    // rows: y_in = c*y + s*x + oy; columns: x_in = -s*y + c*x + ox
    return Rotation{c, s, cy - (c * cy + s * cx), cx - (-s * cy + c * cx)};
}

// floor() for x > -2 (callers check the range first): truncation of a positive value.
ECHOCLR_HD inline int floor_above_minus_two(double x) { return static_cast<int>(x + 2.0) - 2; }

// The four neighbours of one rotated output pixel: rows r0, r0 + 1 and columns q0, q0 + 1, in the
// order (r0, q0), (r0, q0 + 1), (r0 + 1, q0), (r0 + 1, q0 + 1). A neighbour outside the frame
// has weight 0 (`inside` false); `any` is false when no neighbour is inside (the pixel is 0).
struct Bilinear {
    int r0, q0;
    bool any;
    bool inside[4];
    float w[4];
};

ECHOCLR_HD inline Bilinear bilinear(const Rotation& rot, int h, int w, int y, int x) {
    Bilinear b;
    const double yi = rot.c * y + rot.s * x + rot.oy;
    const double xi = -rot.s * y + rot.c * x + rot.ox;
    b.any = yi > -1.0 && yi < h && xi > -1.0 && xi < w;  // false for NaN too
    if (!b.any) {
        b.r0 = b.q0 = 0;
        for (int k = 0; k < 4; ++k) {
            b.inside[k] = false;
            b.w[k] = 0.0f;
        }
        return b;
    }
    b.r0 = floor_above_minus_two(yi);
    b.q0 = floor_above_minus_two(xi);
    const double fy = yi - b.r0, fx = xi - b.q0;
    const bool r0_in = b.r0 >= 0, r1_in = b.r0 + 1 < h, q0_in = b.q0 >= 0, q1_in = b.q0 + 1 < w;
    b.inside[0] = r0_in && q0_in;
    b.inside[1] = r0_in && q1_in;
    b.inside[2] = r1_in && q0_in;
    b.inside[3] = r1_in && q1_in;
    b.w[0] = static_cast<float>(b.inside[0] ? (1.0 - fy) * (1.0 - fx) : 0.0);
    b.w[1] = static_cast<float>(b.inside[1] ? (1.0 - fy) * fx : 0.0);
    b.w[2] = static_cast<float>(b.inside[2] ? fy * (1.0 - fx) : 0.0);
    b.w[3] = static_cast<float>(b.inside[3] ? fy * fx : 0.0);
    return b;
}

// The weighted sum of four neighbour values (floats, or GCC vectors of floats: 4 frames at once).
template <typename V>
ECHOCLR_HD inline V weighted_sum(const float* w, V a, V b, V c, V d) {
    return w[0] * a + w[1] * b + w[2] * c + w[3] * d;
}

// Clamp to [0, 255] and round half to even. Adding and subtracting 2^23 rounds a float in
// [0, 2^22] to an integer in the current (nearest-even, like numpy.rint) rounding mode; IEEE
// arithmetic is not reassociated without fast-math, so the pair is not folded away.
template <typename V>
ECHOCLR_HD inline V clamp_round(V v, V zero, V top, V magic) {
    v = v < zero ? zero : v;
    v = v > top ? top : v;
    return (v + magic) - magic;
}

ECHOCLR_HD inline float clamp_round(float v) { return clamp_round(v, 0.0f, 255.0f, 8388608.0f); }

// Source row / column of the shifted and flipped frame: out[y, x] = in[y + dy, xs + dx] with
// xs = w - 1 - x when flipped, else x; outside [0, h) / [0, w) the pixel is 0.
ECHOCLR_HD inline int source_row(int y, int dy) { return y + dy; }
ECHOCLR_HD inline int source_col(int x, int w, int dx, bool flip) { return (flip ? w - 1 - x : x) + dx; }

ECHOCLR_HD inline echoclr_u8 shifted(const echoclr_u8* frame, int h, int w, int dy, int dx, bool flip, int y, int x) {
    const int sy = source_row(y, dy), sx = source_col(x, w, dx, flip);
    return (sy >= 0 && sy < h && sx >= 0 && sx < w) ? frame[sy * w + sx] : echoclr_u8(0);
}

// The warped value of output pixel (y, x) of one frame: shift, flip, then rotation (or none).
ECHOCLR_HD inline echoclr_u8 warped(const echoclr_u8* frame, int h, int w, int dy, int dx, bool flip, bool rotate,
                                    const Rotation& rot, int y, int x) {
    if (!rotate) return shifted(frame, h, w, dy, dx, flip, y, x);
    const Bilinear b = bilinear(rot, h, w, y, x);
    if (!b.any) return 0;
    float v[4];
    for (int k = 0; k < 4; ++k) {
        const int r = b.r0 + (k >> 1), q = b.q0 + (k & 1);
        v[k] = b.inside[k] ? static_cast<float>(shifted(frame, h, w, dy, dx, flip, r, q)) : 0.0f;
    }
    return static_cast<echoclr_u8>(static_cast<int>(clamp_round(weighted_sum(b.w, v[0], v[1], v[2], v[3]))));
}

// Min-max of one warped value, float32 step for step as the reference: (u - lo) / scale with
// scale = max(hi - lo, min_range).
ECHOCLR_HD inline float minmax_scale(float lo, float hi, float min_range) {
    const float range = hi - lo;
    return range > min_range ? range : min_range;
}

ECHOCLR_HD inline float minmax(echoclr_u8 u, float lo, float scale) { return (static_cast<float>(u) - lo) / scale; }

ECHOCLR_HD inline float standardise(float x, float mean, float std) { return (x - mean) / std; }

}  // namespace pixel
}  // namespace echoclr

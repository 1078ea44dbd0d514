#include "augment.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <thread>

namespace echoclr {

namespace {

constexpr double kPi = 3.14159265358979323846;

// floor() for x > -2 (callers check the range first): truncation of a positive value.
inline int floor_above_minus_two(double x) { return static_cast<int>(x + 2.0) - 2; }

constexpr int kGroup = 4;  // frames interpolated together: one pixel of a group is 4 contiguous bytes

// The taps of a rotation about the centre ((h-1)/2, (w-1)/2), bilinear, zero fill, with the
// sample positions scipy.ndimage.affine_transform computes (in = M @ out + offset, double).
void rotation_taps(int h, int w, double angle_deg, std::vector<Tap>& taps) {
    taps.resize(static_cast<std::size_t>(h) * w);
    const double theta = angle_deg * kPi / 180.0;
    const double c = std::cos(theta), s = std::sin(theta);
    const double cy = (h - 1) / 2.0, cx = (w - 1) / 2.0;
    // rows: y_in = c*y + s*x + oy; columns: x_in = -s*y + c*x + ox
    const double oy = cy - (c * cy + s * cx);
    const double ox = cx - (-s * cy + c * cx);
    for (int y = 0; y < h; ++y) {
        for (int x = 0; x < w; ++x) {
            Tap& tap = taps[static_cast<std::size_t>(y) * w + x];
            const double yi = c * y + s * x + oy;
            const double xi = -s * y + c * x + ox;
            if (!(yi > -1.0 && yi < h && xi > -1.0 && xi < w)) {  // no neighbour inside (or NaN)
                tap = Tap{0, 0, 0, {0.0f, 0.0f, 0.0f, 0.0f}};
                continue;
            }
            const int r0 = floor_above_minus_two(yi), q0 = floor_above_minus_two(xi);
            const double fy = yi - r0, fx = xi - q0;
            const bool r0_in = r0 >= 0, r1_in = r0 + 1 < h, q0_in = q0 >= 0, q1_in = q0 + 1 < w;
            // a neighbour outside the frame reads a clamped (inside) pixel with weight 0
            const int ra = r0_in ? r0 : 0, rb = r1_in ? r0 + 1 : h - 1;
            const int qa = q0_in ? q0 : 0, qb = q1_in ? q0 + 1 : w - 1;
            tap.base = (ra * w + qa) * kGroup;
            tap.dcol = (qb - qa) * kGroup;
            tap.drow = (rb - ra) * w * kGroup;
            tap.w[0] = static_cast<float>((r0_in && q0_in) ? (1.0 - fy) * (1.0 - fx) : 0.0);
            tap.w[1] = static_cast<float>((r0_in && q1_in) ? (1.0 - fy) * fx : 0.0);
            tap.w[2] = static_cast<float>((r1_in && q0_in) ? fy * (1.0 - fx) : 0.0);
            tap.w[3] = static_cast<float>((r1_in && q1_in) ? fy * fx : 0.0);
        }
    }
}

// Four lanes (one pixel of an interleaved group) in one vector: GCC/Clang vector extensions
// compile to SSE2 on x86-64 and NEON on aarch64.
typedef uint8_t U8x4 __attribute__((vector_size(4)));
typedef int32_t I32x4 __attribute__((vector_size(16)));
typedef float F32x4 __attribute__((vector_size(16)));

inline F32x4 load_lanes(const uint8_t* p) {
    U8x4 bytes;
    std::memcpy(&bytes, p, sizeof bytes);
    // via int32: both steps have vector instructions (a direct uint8 -> float conversion is
    // done lane by lane on SSE2)
    return __builtin_convertvector(__builtin_convertvector(bytes, I32x4), F32x4);
}

// Rotate frames [first, first + n) (n <= 4) held interleaved in `group` (H, W, 4) into planar `moved`.
void rotate_group(const uint8_t* group, const std::vector<Tap>& taps, int n, int64_t plane, uint8_t* moved) {
    const F32x4 zero = {0.0f, 0.0f, 0.0f, 0.0f};
    const F32x4 top = {255.0f, 255.0f, 255.0f, 255.0f};
    // Adding and subtracting 2^23 rounds a float in [0, 2^22] to an integer in the current
    // (nearest-even, like numpy.rint) rounding mode; IEEE arithmetic is not reassociated
    // without -ffast-math, so the pair is not folded away. std::nearbyint is a libm call on
    // baseline x86-64 and cost more than the interpolation.
    const F32x4 magic = {8388608.0f, 8388608.0f, 8388608.0f, 8388608.0f};
    for (int64_t o = 0; o < plane; ++o) {
        const Tap& tap = taps[o];
        const uint8_t* p00 = group + tap.base;
        const uint8_t* p10 = p00 + tap.drow;
        F32x4 v = tap.w[0] * load_lanes(p00) + tap.w[1] * load_lanes(p00 + tap.dcol) +
                  tap.w[2] * load_lanes(p10) + tap.w[3] * load_lanes(p10 + tap.dcol);
        v = v < zero ? zero : v;
        v = v > top ? top : v;
        v = (v + magic) - magic;
        const U8x4 bytes = __builtin_convertvector(__builtin_convertvector(v, I32x4), U8x4);
        if (n == kGroup) {
            moved[o] = bytes[0];
            moved[plane + o] = bytes[1];
            moved[2 * plane + o] = bytes[2];
            moved[3 * plane + o] = bytes[3];
        } else {
            for (int k = 0; k < n; ++k) moved[k * plane + o] = bytes[k];
        }
    }
}

// out[y, x] = in[y + dy, xs + dx] with xs = W - 1 - x when flipped, else x; 0 outside; written
// with a stride of `step` bytes per pixel (1: a plane; 4: one lane of an interleaved group).
void shift_flip_frame(const uint8_t* in, int h, int w, int dy, int dx, bool flip, uint8_t* out, int step) {
    for (int y = 0; y < h; ++y) {
        uint8_t* row = out + static_cast<int64_t>(y) * w * step;
        const int sy = y + dy;
        if (sy < 0 || sy >= h) {
            for (int x = 0; x < w; ++x) row[x * step] = 0;
            continue;
        }
        const uint8_t* src = in + static_cast<int64_t>(sy) * w;
        for (int x = 0; x < w; ++x) {
            const int sx = (flip ? w - 1 - x : x) + dx;
            row[x * step] = (sx >= 0 && sx < w) ? src[sx] : 0;
        }
    }
}

void run_part(const std::vector<ClipJob>& jobs, std::size_t first, std::size_t stop, const Normalisation& norm) {
    std::vector<uint8_t> moved;
    Scratch scratch;
    for (std::size_t i = first; i < stop; ++i) {
        const ClipJob& job = jobs[i];
        const std::size_t n = static_cast<std::size_t>(job.t) * job.h * job.w;
        if (moved.size() < n) moved.resize(n);
        warp_clip(job, moved.data(), scratch);
        normalise_clip(moved.data(), static_cast<int64_t>(n), norm, job.out);
    }
}

}  // namespace

void warp_clip(const ClipJob& job, uint8_t* moved, Scratch& scratch) {
    const int64_t plane = static_cast<int64_t>(job.h) * job.w;
    if (job.angle_deg == 0.0) {  // exact copies straight into the planar output
        for (int f = 0; f < job.t; ++f)
            shift_flip_frame(job.clip + job.order[f] * plane, job.h, job.w, job.dy, job.dx, job.flip,
                             moved + f * plane, 1);
        return;
    }
    rotation_taps(job.h, job.w, job.angle_deg, scratch.taps);
    scratch.group.resize(static_cast<std::size_t>(plane) * kGroup);
    for (int first = 0; first < job.t; first += kGroup) {
        const int n = std::min(kGroup, job.t - first);
        uint8_t* group = scratch.group.data();
        for (int k = 0; k < kGroup; ++k) {
            if (k < n) {
                shift_flip_frame(job.clip + job.order[first + k] * plane, job.h, job.w, job.dy, job.dx, job.flip,
                                 group + k, kGroup);
            } else {
                for (int64_t o = 0; o < plane; ++o) group[o * kGroup + k] = 0;  // unused lanes
            }
        }
        rotate_group(group, scratch.taps, n, plane, moved + first * plane);
    }
}

void normalise_clip(const uint8_t* moved, int64_t n, const Normalisation& norm, float* out) {
    if (n == 0) return;
    uint8_t lo = 255, hi = 0;
    for (int64_t i = 0; i < n; ++i) {
        lo = std::min(lo, moved[i]);
        hi = std::max(hi, moved[i]);
    }
    // float32 arithmetic step for step as the reference: (u - lo) / max(hi - lo, min_range)
    const float lo32 = static_cast<float>(lo);
    const float scale = std::max(static_cast<float>(hi) - lo32, norm.min_range);
    if (norm.channels == 1) {
        for (int64_t i = 0; i < n; ++i) out[i] = (static_cast<float>(moved[i]) - lo32) / scale;
        return;
    }
    for (int64_t i = 0; i < n; ++i) {
        const float x = (static_cast<float>(moved[i]) - lo32) / scale;
        for (int c = 0; c < 3; ++c) out[3 * i + c] = norm.standardise ? (x - norm.mean[c]) / norm.std[c] : x;
    }
}

void augment_clips(const std::vector<ClipJob>& jobs, const Normalisation& norm, int threads) {
    const std::size_t n = jobs.size();
    const std::size_t parts = std::max<std::size_t>(1, std::min<std::size_t>(threads < 1 ? 1 : threads, n));
    std::vector<std::thread> workers;
    std::vector<std::exception_ptr> errors(parts);
    for (std::size_t k = 1; k < parts; ++k) {
        workers.emplace_back([&, k] {
            try {
                run_part(jobs, n * k / parts, n * (k + 1) / parts, norm);
            } catch (...) {
                errors[k] = std::current_exception();
            }
        });
    }
    try {
        run_part(jobs, 0, n / parts, norm);
    } catch (...) {
        errors[0] = std::current_exception();
    }
    for (auto& worker : workers) worker.join();
    for (auto& error : errors)
        if (error) std::rethrow_exception(error);
}

}  // namespace echoclr

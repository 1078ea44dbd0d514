#include "augment.hpp"
#include "augment_pixel.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <thread>

namespace echoclr {

namespace {

constexpr int kGroup = 4;  // frames interpolated together: one pixel of a group is 4 contiguous bytes

// The taps of a rotation (augment_pixel.h: pixel::bilinear per output pixel), as byte offsets into an
// interleaved (H, W, 4) group; a neighbour outside the frame reads a clamped (inside) pixel with weight 0.
void rotation_taps(int h, int w, double angle_deg, std::vector<Tap>& taps) {
    taps.resize(static_cast<std::size_t>(h) * w);
    const pixel::Rotation rot = pixel::rotation(h, w, angle_deg);
    for (int y = 0; y < h; ++y) {
        for (int x = 0; x < w; ++x) {
            Tap& tap = taps[static_cast<std::size_t>(y) * w + x];
            const pixel::Bilinear b = pixel::bilinear(rot, h, w, y, x);
            if (!b.any) {
                tap = Tap{0, 0, 0, {0.0f, 0.0f, 0.0f, 0.0f}};
                continue;
            }
            const int ra = b.r0 >= 0 ? b.r0 : 0, rb = b.r0 + 1 < h ? b.r0 + 1 : h - 1;
            const int qa = b.q0 >= 0 ? b.q0 : 0, qb = b.q0 + 1 < w ? b.q0 + 1 : w - 1;
            tap.base = (ra * w + qa) * kGroup;
            tap.dcol = (qb - qa) * kGroup;
            tap.drow = (rb - ra) * w * kGroup;
            for (int k = 0; k < 4; ++k) tap.w[k] = b.w[k];
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
    // pixel::clamp_round's magic-number rounding (std::nearbyint is a libm call on baseline
    // x86-64 and cost more than the interpolation)
    const F32x4 magic = {8388608.0f, 8388608.0f, 8388608.0f, 8388608.0f};
    for (int64_t o = 0; o < plane; ++o) {
        const Tap& tap = taps[o];
        const uint8_t* p00 = group + tap.base;
        const uint8_t* p10 = p00 + tap.drow;
        F32x4 v = pixel::weighted_sum(tap.w, load_lanes(p00), load_lanes(p00 + tap.dcol), load_lanes(p10),
                                      load_lanes(p10 + tap.dcol));
        v = pixel::clamp_round(v, zero, top, magic);
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
        const int sy = pixel::source_row(y, dy);
        if (sy < 0 || sy >= h) {
            for (int x = 0; x < w; ++x) row[x * step] = 0;
            continue;
        }
        const uint8_t* src = in + static_cast<int64_t>(sy) * w;
        for (int x = 0; x < w; ++x) {
            const int sx = pixel::source_col(x, w, dx, flip);
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
    const float scale = pixel::minmax_scale(lo32, static_cast<float>(hi), norm.min_range);
    if (norm.channels == 1) {
        for (int64_t i = 0; i < n; ++i) out[i] = pixel::minmax(moved[i], lo32, scale);
        return;
    }
    for (int64_t i = 0; i < n; ++i) {
        const float x = pixel::minmax(moved[i], lo32, scale);
        for (int c = 0; c < 3; ++c)
            out[3 * i + c] = norm.standardise ? pixel::standardise(x, norm.mean[c], norm.std[c]) : x;
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

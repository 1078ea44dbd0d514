// The CPU clip augmentation as one native kernel: frame order, shift, flip, rotation, min-max.
// The per-output-pixel math lives in augment_pixel.h, shared with the CUDA kernel (augment_cuda.cu);
// this file adds the CPU's batching: one tap table per clip, four frames per vector.
//
// Semantics are those of echoclr/pipeline/reference.py, step for step (see
// echoclr/pipeline/graph.py for the order of the steps):
//   moved[t] = rotate(flip(shift(clip[order[t]])))   uint8, rounded half to even
//   out = (moved - lo) / max(hi - lo, min_range)      float32, lo/hi over the whole clip
//   out[..., c] = (out - mean[c]) / std[c]             for 3 channels with standardisation
// Unrotated clips are exact copies, so they equal the reference bit for bit; rotated clips
// interpolate bilinearly with zero fill outside the frame, as
// scipy.ndimage.affine_transform(order=1, mode="grid-constant") does: sample positions and
// weights in double precision, the weighted sum of four frames at once in float.
#pragma once

#include <cstdint>
#include <vector>

namespace echoclr {

struct ClipJob {
    const uint8_t* clip;   // (T, H, W), C order
    const int32_t* order;  // (T,): output frame t is input frame order[t]
    int dy, dx;            // shift: out[y, x] = in[y + dy, x + dx], 0 outside
    bool flip;             // horizontal flip after the shift
    double angle_deg;      // rotation after the flip, counter-clockwise on screen; 0 = none
    int t, h, w;           // clip shape
    float* out;            // (T, H, W, C) float32
};

struct Normalisation {
    int channels;          // 1, or 3 (gray replicated)
    float min_range;
    bool standardise;
    float mean[3];
    float std[3];
};

// Where one output pixel of a rotation samples: bytes base, base + dcol, base + drow and
// base + drow + dcol of an interleaved (H, W, 4) group of frames, with these weights (0 for
// neighbours outside the frame, whose bytes are then clamped ones inside it).
struct Tap {
    int32_t base, dcol, drow;
    float w[4];
};

// Work space of warp_clip, reused across clips of one thread.
struct Scratch {
    std::vector<Tap> taps;    // per output pixel: where and how it samples
    std::vector<uint8_t> group;    // up to 4 shifted frames, interleaved (H, W, 4)
};

// Frame order, shift, flip and rotation of one clip into `moved` (T*H*W uint8, planar).
void warp_clip(const ClipJob& job, uint8_t* moved, Scratch& scratch);

// Min-max (and channels/standardisation) of n warped pixels into out (n * channels floats).
void normalise_clip(const uint8_t* moved, int64_t n, const Normalisation& norm, float* out);

// Every job, split into `threads` contiguous parts (the caller runs the first). Call
// without the GIL: nothing here touches Python.
void augment_clips(const std::vector<ClipJob>& jobs, const Normalisation& norm, int threads);

}  // namespace echoclr

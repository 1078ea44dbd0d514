// Epoch planner: a pure function of (seed, epoch, rank, world_size) and the store's index.
//
// The algorithm is specified in echoclr/data/sampling.py (module docstring), whose pure-Python
// twin must produce identical plans; change both together. No Python types in this file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace echoclr {

enum class Mode { Pairs = 0, Single = 1, Eval = 2 };

struct PlanConfig {
    Mode mode = Mode::Pairs;
    int64_t clip_len = 4;    // K, frames per clip (stride 1)
    uint64_t seed = 0;
    bool reorder = true;     // false: every perm field is 0
    int64_t n_clips = 4;     // eval mode: clips per video
    int64_t num_orders = 24; // K! (perm range); the caller derives it from clip_len
    // Augmentation draws (pairs/single): false makes every dy, dx, flip and angle field 0.
    bool augment = true;
    int64_t pad = 8;                   // dy, dx uniform in [-pad, pad]
    uint64_t flip_threshold = 1ULL << 31;    // flip when uniform_below(2^32) < this (p * 2^32)
    uint64_t rotate_threshold = 1ULL << 31;  // rotate when uniform_below(2^32) < this
    int64_t angle_steps = 10000;       // angle (millidegrees) uniform in [-steps, steps) when rotated
};

// The store's index: one entry per video. Pointers are borrowed for the call.
struct VideoIndex {
    const int64_t* study_of_video = nullptr;
    const int64_t* n_frames = nullptr;
    std::size_t n_videos = 0;
};

// One epoch's items for one rank: parallel int64 columns named per mode
// (pairs: video_i start_i perm_i video_j start_j perm_j, then dy dx flip angle_mdeg of view i
// and of view j; single: video start perm_a perm_b, then the four of view a and of view b;
// eval: video start clip_index).
struct Plan {
    std::vector<std::string> names;
    std::vector<std::vector<int64_t>> columns;
};

// Counter-based random numbers (splitmix64 finaliser), identical to the Python twin.
namespace rng {

constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ULL;

inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

inline uint64_t combine(uint64_t h, uint64_t v) { return mix64(h + kGolden * (v + 1)); }

inline uint64_t stream_key(uint64_t seed, uint64_t epoch, uint64_t stream, uint64_t sub) {
    return combine(combine(combine(combine(0, seed), epoch), stream), sub);
}

// Uniform integer in [0, bound) for (key, counter); bound >= 1. Rejection sampling: draws below
// 2^64 mod bound are rejected (retried with attempt + 1), so x % bound is exactly uniform.
inline uint64_t uniform_below(uint64_t key, uint64_t counter, uint64_t bound) {
    const uint64_t threshold = (0 - bound) % bound;
    const uint64_t base = combine(key, counter);
    for (uint64_t attempt = 0;; ++attempt) {
        const uint64_t x = combine(base, attempt);
        if (x >= threshold) return x % bound;
    }
}

}  // namespace rng

// Stream numbers (part of the plan's definition; shared with the Python twin).
enum Stream : uint64_t {
    kStudyOrder = 1,  // shuffle of studies before the greedy rank assignment
    kItemOrder = 2,   // shuffle of a rank's items (sub-stream = rank)
    kSwap = 3,        // pairs: which video of a pair is "i"
    kStartA = 4,      // pairs: start_i; single: start
    kStartB = 5,      // pairs: start_j
    kPermA = 6,       // pairs: perm_i; single: perm_a
    kPermB = 7,       // pairs: perm_j; single: perm_b
    // augmentation draws; sub-stream = view (0: i / a, 1: j / b)
    kShiftY = 8,
    kShiftX = 9,
    kFlip = 10,
    kRotate = 11,
    kAngle = 12,
};

// Items per rank (length world_size). Throws std::invalid_argument on bad arguments.
std::vector<int64_t> rank_item_counts(const PlanConfig& config, const VideoIndex& index,
                                      uint64_t epoch, int64_t world_size);

// The plan of one rank, from item start_item on. Throws std::invalid_argument on bad arguments.
Plan plan_epoch(const PlanConfig& config, const VideoIndex& index, uint64_t epoch, int64_t rank,
                int64_t world_size, int64_t start_item);

}  // namespace echoclr

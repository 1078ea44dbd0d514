// Epoch planner; see sampler.hpp and the specification in echoclr/data/sampling.py.
#include "sampler.hpp"

#include <algorithm>
#include <numeric>
#include <queue>
#include <stdexcept>
#include <utility>

namespace echoclr {
namespace {

// Videos grouped by study: studies in ascending study value, videos of a study ascending.
struct Studies {
    std::vector<int64_t> videos;  // all video indices, grouped by study
    std::vector<int64_t> begin;   // study p owns videos[begin[p] .. begin[p + 1])
    std::size_t size() const { return begin.empty() ? 0 : begin.size() - 1; }
    int64_t n_videos(std::size_t p) const { return begin[p + 1] - begin[p]; }
};

void validate(const PlanConfig& config, const VideoIndex& index, int64_t world_size) {
    if (config.clip_len < 1) throw std::invalid_argument("clip_len must be >= 1");
    if (config.n_clips < 1) throw std::invalid_argument("n_clips must be >= 1");
    if (config.num_orders < 1) throw std::invalid_argument("num_orders must be >= 1");
    if (world_size < 1) throw std::invalid_argument("world_size must be >= 1");
    if (config.pad < 0) throw std::invalid_argument("pad must be >= 0");
    if (config.flip_threshold > (1ULL << 32) || config.rotate_threshold > (1ULL << 32))
        throw std::invalid_argument("flip/rotate thresholds must be <= 2^32");
    if (config.angle_steps < 1) throw std::invalid_argument("angle_steps must be >= 1");
    if (index.n_videos > 0 && (index.study_of_video == nullptr || index.n_frames == nullptr))
        throw std::invalid_argument("index arrays are null");
    for (std::size_t v = 0; v < index.n_videos; ++v) {
        if (index.n_frames[v] < 1)
            throw std::invalid_argument("n_frames[" + std::to_string(v) + "] = " +
                                        std::to_string(index.n_frames[v]) + " is < 1");
    }
}

Studies group_by_study(const VideoIndex& index) {
    Studies s;
    s.videos.resize(index.n_videos);
    std::iota(s.videos.begin(), s.videos.end(), int64_t{0});
    const int64_t* study = index.study_of_video;
    std::stable_sort(s.videos.begin(), s.videos.end(),
                     [study](int64_t a, int64_t b) { return study[a] < study[b]; });
    for (std::size_t k = 0; k < s.videos.size(); ++k) {
        if (k == 0 || study[s.videos[k]] != study[s.videos[k - 1]])
            s.begin.push_back(static_cast<int64_t>(k));
    }
    s.begin.push_back(static_cast<int64_t>(s.videos.size()));
    return s;
}

int64_t study_items(Mode mode, int64_t n, int64_t n_clips) {
    switch (mode) {
        case Mode::Pairs: return n == 1 ? 1 : n * (n - 1) / 2;
        case Mode::Single: return n;
        case Mode::Eval: return n * n_clips;
    }
    return 0;
}

// Fisher-Yates, i = n-1 .. 1, j = uniform_below(key, i, i + 1).
template <typename T>
void shuffle(std::vector<T>& values, uint64_t key) {
    for (std::size_t i = values.size(); i-- > 1;) {
        const auto j = static_cast<std::size_t>(rng::uniform_below(key, i, i + 1));
        std::swap(values[i], values[j]);
    }
}

// owner[p] = rank of study p: studies shuffled (not in eval mode), stably sorted by item count
// descending, each given to the least-loaded rank (ties: lowest rank).
std::vector<int64_t> assign_ranks(const PlanConfig& config, const std::vector<int64_t>& counts,
                                  uint64_t epoch, int64_t world_size) {
    const std::size_t n_studies = counts.size();
    std::vector<int64_t> owner(n_studies, 0);
    if (world_size == 1) return owner;
    std::vector<int64_t> order(n_studies);
    std::iota(order.begin(), order.end(), int64_t{0});
    if (config.mode != Mode::Eval)
        shuffle(order, rng::stream_key(config.seed, epoch, kStudyOrder, 0));
    std::stable_sort(order.begin(), order.end(),
                     [&counts](int64_t a, int64_t b) { return counts[a] > counts[b]; });
    using Slot = std::pair<int64_t, int64_t>;  // (load, rank)
    std::priority_queue<Slot, std::vector<Slot>, std::greater<Slot>> least_loaded;
    for (int64_t r = 0; r < world_size; ++r) least_loaded.emplace(0, r);
    for (int64_t p : order) {
        Slot slot = least_loaded.top();
        least_loaded.pop();
        owner[p] = slot.second;
        slot.first += counts[p];
        least_loaded.push(slot);
    }
    return owner;
}

struct Layout {
    Studies studies;
    std::vector<int64_t> counts;  // items per study
    std::vector<int64_t> owner;   // rank per study
};

Layout layout(const PlanConfig& config, const VideoIndex& index, uint64_t epoch,
              int64_t world_size) {
    validate(config, index, world_size);
    Layout out;
    out.studies = group_by_study(index);
    const std::size_t n_studies = out.studies.size();
    out.counts.resize(n_studies);
    for (std::size_t p = 0; p < n_studies; ++p)
        out.counts[p] = study_items(config.mode, out.studies.n_videos(p), config.n_clips);
    out.owner = assign_ranks(config, out.counts, epoch, world_size);
    return out;
}

// Videos of a rank's studies, ascending.
std::vector<int64_t> rank_videos(const Layout& lay, int64_t rank) {
    std::vector<int64_t> vids;
    for (std::size_t p = 0; p < lay.studies.size(); ++p) {
        if (lay.owner[p] != rank) continue;
        for (int64_t k = lay.studies.begin[p]; k < lay.studies.begin[p + 1]; ++k)
            vids.push_back(lay.studies.videos[k]);
    }
    std::sort(vids.begin(), vids.end());
    return vids;
}

int64_t last_start(const VideoIndex& index, int64_t video, int64_t clip_len) {
    return std::max<int64_t>(0, index.n_frames[video] - clip_len);
}

int64_t draw_start(uint64_t key, uint64_t counter, const VideoIndex& index, int64_t video,
                   int64_t clip_len) {
    const auto bound = static_cast<uint64_t>(last_start(index, video, clip_len)) + 1;
    return static_cast<int64_t>(rng::uniform_below(key, counter, bound));
}

int64_t draw_perm(const PlanConfig& config, uint64_t key, uint64_t counter) {
    if (!config.reorder) return 0;
    return static_cast<int64_t>(
        rng::uniform_below(key, counter, static_cast<uint64_t>(config.num_orders)));
}

constexpr uint64_t kProbabilityScale = 1ULL << 32;

// The augmentation of one view of item g: (dy, dx, flip, angle in millidegrees; 0 = not rotated).
struct ViewDraws {
    uint64_t shift_y, shift_x, flip, rotate, angle;  // stream keys
    ViewDraws(const PlanConfig& config, uint64_t epoch, uint64_t view)
        : shift_y(rng::stream_key(config.seed, epoch, kShiftY, view)),
          shift_x(rng::stream_key(config.seed, epoch, kShiftX, view)),
          flip(rng::stream_key(config.seed, epoch, kFlip, view)),
          rotate(rng::stream_key(config.seed, epoch, kRotate, view)),
          angle(rng::stream_key(config.seed, epoch, kAngle, view)) {}

    void draw(const PlanConfig& config, uint64_t g, int64_t* dy, int64_t* dx, int64_t* fl, int64_t* mdeg) const {
        if (!config.augment) {
            *dy = *dx = *fl = *mdeg = 0;
            return;
        }
        const auto side = static_cast<uint64_t>(2 * config.pad + 1);
        *dy = static_cast<int64_t>(rng::uniform_below(shift_y, g, side)) - config.pad;
        *dx = static_cast<int64_t>(rng::uniform_below(shift_x, g, side)) - config.pad;
        *fl = rng::uniform_below(flip, g, kProbabilityScale) < config.flip_threshold ? 1 : 0;
        const bool rotated = rng::uniform_below(rotate, g, kProbabilityScale) < config.rotate_threshold;
        const auto steps = static_cast<uint64_t>(config.angle_steps);
        *mdeg = rotated ? static_cast<int64_t>(rng::uniform_below(angle, g, 2 * steps)) - config.angle_steps : 0;
    }
};

const char* const kViewFields[] = {"dy", "dx", "flip", "angle_mdeg"};

// Appends the four augmentation columns of views `a` and `b` (suffixes) to the plan's names.
void add_view_names(Plan& plan, const char* a, const char* b) {
    for (const char* suffix : {a, b})
        for (const char* field : kViewFields) plan.names.push_back(std::string(field) + "_" + suffix);
}

// Fills columns [first, first + 8) of row t with the draws of both views of item g.
void fill_views(Plan& plan, std::size_t first, std::size_t t, const PlanConfig& config, const ViewDraws& view_a,
                const ViewDraws& view_b, uint64_t g) {
    auto& c = plan.columns;
    view_a.draw(config, g, &c[first][t], &c[first + 1][t], &c[first + 2][t], &c[first + 3][t]);
    view_b.draw(config, g, &c[first + 4][t], &c[first + 5][t], &c[first + 6][t], &c[first + 7][t]);
}

void check_start_item(int64_t start_item, std::size_t n_items) {
    if (start_item < 0 || static_cast<uint64_t>(start_item) > n_items)
        throw std::invalid_argument("start_item " + std::to_string(start_item) +
                                    " is outside [0, " + std::to_string(n_items) +
                                    "]: this rank has " + std::to_string(n_items) +
                                    " items this epoch");
}

Plan plan_pairs(const PlanConfig& config, const VideoIndex& index, const Layout& lay,
                uint64_t epoch, int64_t rank, int64_t start_item) {
    struct Item { int64_t g, a, b; };  // canonical id, videos in ascending order
    std::vector<Item> items;
    int64_t offset = 0;  // canonical id of the study's first item, over all ranks
    for (std::size_t p = 0; p < lay.studies.size(); ++p) {
        if (lay.owner[p] == rank) {
            const int64_t* v = lay.studies.videos.data() + lay.studies.begin[p];
            const int64_t n = lay.studies.n_videos(p);
            if (n == 1) {
                items.push_back({offset, v[0], v[0]});
            } else {
                int64_t g = offset;
                for (int64_t a = 0; a < n; ++a)
                    for (int64_t b = a + 1; b < n; ++b) items.push_back({g++, v[a], v[b]});
            }
        }
        offset += lay.counts[p];
    }
    check_start_item(start_item, items.size());
    shuffle(items, rng::stream_key(config.seed, epoch, kItemOrder, static_cast<uint64_t>(rank)));

    const uint64_t k_swap = rng::stream_key(config.seed, epoch, kSwap, 0);
    const uint64_t k_start_i = rng::stream_key(config.seed, epoch, kStartA, 0);
    const uint64_t k_start_j = rng::stream_key(config.seed, epoch, kStartB, 0);
    const uint64_t k_perm_i = rng::stream_key(config.seed, epoch, kPermA, 0);
    const uint64_t k_perm_j = rng::stream_key(config.seed, epoch, kPermB, 0);
    Plan plan;
    const ViewDraws view_i(config, epoch, 0), view_j(config, epoch, 1);
    plan.names = {"video_i", "start_i", "perm_i", "video_j", "start_j", "perm_j"};
    add_view_names(plan, "i", "j");
    const std::size_t n_out = items.size() - static_cast<std::size_t>(start_item);
    plan.columns.assign(plan.names.size(), std::vector<int64_t>(n_out));
    for (std::size_t t = 0; t < n_out; ++t) {
        const Item& it = items[t + static_cast<std::size_t>(start_item)];
        const auto g = static_cast<uint64_t>(it.g);
        const bool swap = rng::uniform_below(k_swap, g, 2) == 1;
        const int64_t vi = swap ? it.b : it.a;
        const int64_t vj = swap ? it.a : it.b;
        plan.columns[0][t] = vi;
        plan.columns[1][t] = draw_start(k_start_i, g, index, vi, config.clip_len);
        plan.columns[2][t] = draw_perm(config, k_perm_i, g);
        plan.columns[3][t] = vj;
        plan.columns[4][t] = draw_start(k_start_j, g, index, vj, config.clip_len);
        plan.columns[5][t] = draw_perm(config, k_perm_j, g);
        fill_views(plan, 6, t, config, view_i, view_j, g);
    }
    return plan;
}

Plan plan_single(const PlanConfig& config, const VideoIndex& index, const Layout& lay,
                 uint64_t epoch, int64_t rank, int64_t start_item) {
    std::vector<int64_t> vids = rank_videos(lay, rank);  // canonical id = video index
    check_start_item(start_item, vids.size());
    shuffle(vids, rng::stream_key(config.seed, epoch, kItemOrder, static_cast<uint64_t>(rank)));

    const uint64_t k_start = rng::stream_key(config.seed, epoch, kStartA, 0);
    const uint64_t k_perm_a = rng::stream_key(config.seed, epoch, kPermA, 0);
    const uint64_t k_perm_b = rng::stream_key(config.seed, epoch, kPermB, 0);
    Plan plan;
    const ViewDraws view_a(config, epoch, 0), view_b(config, epoch, 1);
    plan.names = {"video", "start", "perm_a", "perm_b"};
    add_view_names(plan, "a", "b");
    const std::size_t n_out = vids.size() - static_cast<std::size_t>(start_item);
    plan.columns.assign(plan.names.size(), std::vector<int64_t>(n_out));
    for (std::size_t t = 0; t < n_out; ++t) {
        const int64_t v = vids[t + static_cast<std::size_t>(start_item)];
        const auto g = static_cast<uint64_t>(v);
        plan.columns[0][t] = v;
        plan.columns[1][t] = draw_start(k_start, g, index, v, config.clip_len);
        plan.columns[2][t] = draw_perm(config, k_perm_a, g);
        plan.columns[3][t] = draw_perm(config, k_perm_b, g);
        fill_views(plan, 4, t, config, view_a, view_b, g);
    }
    return plan;
}

// start_k = floor(k * L / (n_clips - 1)) with L = max(0, n_frames - K); n_clips == 1: floor(L / 2).
int64_t eval_start(int64_t last, int64_t k, int64_t n_clips) {
    if (n_clips == 1) return last / 2;
    const int64_t d = n_clips - 1;
    return k * (last / d) + (k * (last % d)) / d;  // == k * last / d without overflow
}

Plan plan_eval(const PlanConfig& config, const VideoIndex& index, const Layout& lay,
               int64_t rank, int64_t start_item) {
    const std::vector<int64_t> vids = rank_videos(lay, rank);
    const auto n_items = vids.size() * static_cast<std::size_t>(config.n_clips);
    check_start_item(start_item, n_items);
    Plan plan;
    plan.names = {"video", "start", "clip_index"};
    const std::size_t n_out = n_items - static_cast<std::size_t>(start_item);
    plan.columns.assign(plan.names.size(), std::vector<int64_t>(n_out));
    for (std::size_t t = 0; t < n_out; ++t) {
        const std::size_t item = t + static_cast<std::size_t>(start_item);
        const int64_t v = vids[item / static_cast<std::size_t>(config.n_clips)];
        const auto k = static_cast<int64_t>(item % static_cast<std::size_t>(config.n_clips));
        plan.columns[0][t] = v;
        plan.columns[1][t] = eval_start(last_start(index, v, config.clip_len), k, config.n_clips);
        plan.columns[2][t] = k;
    }
    return plan;
}

}  // namespace

std::vector<int64_t> rank_item_counts(const PlanConfig& config, const VideoIndex& index,
                                      uint64_t epoch, int64_t world_size) {
    const Layout lay = layout(config, index, epoch, world_size);
    std::vector<int64_t> per_rank(static_cast<std::size_t>(world_size), 0);
    for (std::size_t p = 0; p < lay.studies.size(); ++p) per_rank[lay.owner[p]] += lay.counts[p];
    return per_rank;
}

Plan plan_epoch(const PlanConfig& config, const VideoIndex& index, uint64_t epoch, int64_t rank,
                int64_t world_size, int64_t start_item) {
    if (world_size < 1) throw std::invalid_argument("world_size must be >= 1");
    if (rank < 0 || rank >= world_size)
        throw std::invalid_argument("rank " + std::to_string(rank) + " is outside [0, " +
                                    std::to_string(world_size) + ")");
    const Layout lay = layout(config, index, epoch, world_size);
    switch (config.mode) {
        case Mode::Pairs: return plan_pairs(config, index, lay, epoch, rank, start_item);
        case Mode::Single: return plan_single(config, index, lay, epoch, rank, start_item);
        case Mode::Eval: return plan_eval(config, index, lay, rank, start_item);
    }
    throw std::invalid_argument("unknown mode");
}

}  // namespace echoclr

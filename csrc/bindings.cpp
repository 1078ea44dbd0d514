// pybind11 bindings of the native core. Private: use echoclr.data.sampling from Python.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "sampler.hpp"

namespace py = pybind11;

void bind_augment(py::module_& m);  // augment_bindings.cpp

namespace {

using Int64Array = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;

echoclr::Mode parse_mode(const std::string& mode) {
    if (mode == "pairs") return echoclr::Mode::Pairs;
    if (mode == "single") return echoclr::Mode::Single;
    if (mode == "eval") return echoclr::Mode::Eval;
    throw std::invalid_argument("mode must be 'pairs', 'single' or 'eval', got '" + mode + "'");
}

echoclr::VideoIndex as_index(const Int64Array& study_of_video, const Int64Array& n_frames) {
    if (study_of_video.ndim() != 1 || n_frames.ndim() != 1)
        throw std::invalid_argument("study_of_video and n_frames must be 1-D arrays");
    if (study_of_video.shape(0) != n_frames.shape(0))
        throw std::invalid_argument("study_of_video and n_frames differ in length");
    return {study_of_video.data(), n_frames.data(), static_cast<std::size_t>(n_frames.shape(0))};
}

// The augmentation draws of a plan (see echoclr.data.sampling.AugmentDraws); None = no draws.
struct Draws {
    bool augment = false;
    int64_t pad = 0;
    uint64_t flip_threshold = 0, rotate_threshold = 0;
    int64_t angle_steps = 1;
};

Draws parse_draws(const py::object& draws) {
    Draws d;
    if (draws.is_none()) return d;
    const auto t = draws.cast<py::tuple>();
    if (t.size() != 4) throw std::invalid_argument("draws must be (pad, flip_threshold, rotate_threshold, angle_steps)");
    d.augment = true;
    d.pad = t[0].cast<int64_t>();
    d.flip_threshold = t[1].cast<uint64_t>();
    d.rotate_threshold = t[2].cast<uint64_t>();
    d.angle_steps = t[3].cast<int64_t>();
    return d;
}

echoclr::PlanConfig make_config(const std::string& mode, int64_t clip_len, uint64_t seed,
                                bool reorder, int64_t n_clips, int64_t num_orders, const py::object& draws) {
    const Draws d = parse_draws(draws);
    echoclr::PlanConfig config;
    config.mode = parse_mode(mode);
    config.clip_len = clip_len;
    config.seed = seed;
    config.reorder = reorder;
    config.n_clips = n_clips;
    config.num_orders = num_orders;
    config.augment = d.augment;
    config.pad = d.pad;
    config.flip_threshold = d.flip_threshold;
    config.rotate_threshold = d.rotate_threshold;
    config.angle_steps = d.angle_steps;
    return config;
}

// A 1-D int64 numpy array that takes ownership of the vector's buffer (no copy).
py::array_t<int64_t> to_numpy(std::vector<int64_t>&& values) {
    auto* owned = new std::vector<int64_t>(std::move(values));
    py::capsule free_when_done(owned, [](void* p) { delete static_cast<std::vector<int64_t>*>(p); });
    return py::array_t<int64_t>({static_cast<py::ssize_t>(owned->size())}, owned->data(),
                                free_when_done);
}

py::dict plan_epoch(const std::string& mode, const Int64Array& study_of_video,
                    const Int64Array& n_frames, int64_t clip_len, uint64_t seed, bool reorder,
                    int64_t n_clips, int64_t num_orders, const py::object& draws, uint64_t epoch,
                    int64_t rank, int64_t world_size, int64_t start_item) {
    const echoclr::PlanConfig config = make_config(mode, clip_len, seed, reorder, n_clips, num_orders, draws);
    const echoclr::VideoIndex index = as_index(study_of_video, n_frames);
    echoclr::Plan plan;
    {
        // The input arrays stay referenced by the caller's frame, so reading them without the GIL is safe.
        py::gil_scoped_release release;
        plan = echoclr::plan_epoch(config, index, epoch, rank, world_size, start_item);
    }
    py::dict out;
    for (std::size_t c = 0; c < plan.names.size(); ++c)
        out[py::str(plan.names[c])] = to_numpy(std::move(plan.columns[c]));
    return out;
}

py::array_t<int64_t> rank_item_counts(const std::string& mode, const Int64Array& study_of_video,
                                      const Int64Array& n_frames, int64_t clip_len, uint64_t seed,
                                      bool reorder, int64_t n_clips, int64_t num_orders,
                                      const py::object& draws, uint64_t epoch, int64_t world_size) {
    const echoclr::PlanConfig config = make_config(mode, clip_len, seed, reorder, n_clips, num_orders, draws);
    const echoclr::VideoIndex index = as_index(study_of_video, n_frames);
    std::vector<int64_t> counts;
    {
        py::gil_scoped_release release;
        counts = echoclr::rank_item_counts(config, index, epoch, world_size);
    }
    return to_numpy(std::move(counts));
}

}  // namespace

PYBIND11_MODULE(_native, m) {
    m.doc() = "echoclr's native core (epoch sampler, CPU clip augmentation). Private: use echoclr.data.sampling "
            "and echoclr.pipeline.";
    m.attr("abi_version") = 3;
    bind_augment(m);

    m.def("plan_epoch", &plan_epoch, py::arg("mode"), py::arg("study_of_video"),
          py::arg("n_frames"), py::kw_only(), py::arg("clip_len"), py::arg("seed"),
          py::arg("reorder"), py::arg("n_clips"), py::arg("num_orders"), py::arg("draws"),
          py::arg("epoch"), py::arg("rank"), py::arg("world_size"), py::arg("start_item"),
          "One rank's epoch plan as a dict of equal-length int64 arrays (see echoclr.data.sampling).");
    m.def("rank_item_counts", &rank_item_counts, py::arg("mode"), py::arg("study_of_video"),
          py::arg("n_frames"), py::kw_only(), py::arg("clip_len"), py::arg("seed"),
          py::arg("reorder"), py::arg("n_clips"), py::arg("num_orders"), py::arg("draws"),
          py::arg("epoch"), py::arg("world_size"), "Items per rank, int64 array of length world_size.");
    m.def("stream_key", &echoclr::rng::stream_key, py::arg("seed"), py::arg("epoch"),
          py::arg("stream"), py::arg("sub"), "Key of one random stream (for twin tests).");
    m.def("uniform_below",
          [](uint64_t key, uint64_t counter, uint64_t bound) {
              if (bound == 0) throw std::invalid_argument("bound must be >= 1");
              return echoclr::rng::uniform_below(key, counter, bound);
          },
          py::arg("key"), py::arg("counter"),
          py::arg("bound"), "Uniform integer in [0, bound) for (key, counter) (for twin tests).");
}

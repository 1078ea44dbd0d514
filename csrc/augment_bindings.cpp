// pybind11 bindings of the augmentation kernel. Private: use echoclr.pipeline.cpu_ops from Python.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "augment.hpp"

namespace py = pybind11;

namespace {

using U8 = py::array_t<uint8_t, py::array::c_style | py::array::forcecast>;
using I32 = py::array_t<int32_t, py::array::c_style | py::array::forcecast>;
using F32 = py::array_t<float, py::array::c_style | py::array::forcecast>;
using F64 = py::array_t<double, py::array::c_style | py::array::forcecast>;

std::string at(std::size_t i) { return " (clip " + std::to_string(i) + ")"; }

// The arrays a batch of jobs reads or writes; kept referenced while the GIL is released.
struct Batch {
    std::vector<U8> clips;
    std::vector<I32> orders;
    std::vector<py::array_t<float>> outs;
    std::vector<echoclr::ClipJob> jobs;
};

echoclr::ClipJob make_job(Batch& b, std::size_t i, const py::handle& clip_obj, const py::handle& order_obj,
                          const py::handle& shift_obj, const py::handle& flip_obj, const py::handle& angle_obj,
                          const py::handle& out_obj, int channels) {
    U8 clip = U8::ensure(clip_obj);
    I32 order = I32::ensure(order_obj);
    I32 shift = I32::ensure(shift_obj);
    I32 flip = I32::ensure(flip_obj);
    F64 angle = F64::ensure(angle_obj);
    if (!clip || clip.ndim() != 3) throw std::invalid_argument("clips must be uint8 (T, H, W) arrays" + at(i));
    const auto t = clip.shape(0), h = clip.shape(1), w = clip.shape(2);
    if (!order || order.ndim() != 1 || order.shape(0) != t)
        throw std::invalid_argument("orders must be int (T,) arrays matching the clip" + at(i));
    const int32_t* ord = order.data();
    for (py::ssize_t f = 0; f < t; ++f)
        if (ord[f] < 0 || ord[f] >= t) throw std::invalid_argument("frame order out of range" + at(i));
    if (!shift || shift.size() != 2) throw std::invalid_argument("shifts must hold (dy, dx)" + at(i));
    if (!flip || flip.size() != 1) throw std::invalid_argument("flips must be scalars" + at(i));
    if (!angle || angle.size() != 1) throw std::invalid_argument("angles must be scalars" + at(i));
    // the caller's own float32 array, never a converted copy (the kernel writes into it)
    const bool is_f32 = py::isinstance<py::array_t<float>>(out_obj);
    auto out = is_f32 ? py::reinterpret_borrow<py::array_t<float>>(out_obj) : py::array_t<float>();
    if (!is_f32 || out.ndim() != 4 || out.shape(0) != t ||
        out.shape(1) != h || out.shape(2) != w || out.shape(3) != channels ||
        !(out.flags() & py::array::c_style) || !out.writeable())
        throw std::invalid_argument("outs must be writable C-contiguous float32 (T, H, W, channels) arrays" + at(i));
    echoclr::ClipJob job{clip.data(), ord, shift.data()[0], shift.data()[1], flip.data()[0] != 0, angle.data()[0],
                         static_cast<int>(t), static_cast<int>(h), static_cast<int>(w), out.mutable_data()};
    b.clips.push_back(std::move(clip));
    b.orders.push_back(std::move(order));
    b.outs.push_back(std::move(out));
    return job;
}

void augment_clips(const py::sequence& clips, const py::sequence& orders, const py::sequence& shifts,
                   const py::sequence& flips, const py::sequence& angles, const py::sequence& outs, int channels,
                   float min_range, const py::object& mean, const py::object& std, int threads) {
    const std::size_t n = clips.size();
    if (orders.size() != n || shifts.size() != n || flips.size() != n || angles.size() != n || outs.size() != n)
        throw std::invalid_argument("clips, orders, shifts, flips, angles and outs must have equal lengths");
    if (channels != 1 && channels != 3) throw std::invalid_argument("channels must be 1 or 3");
    echoclr::Normalisation norm{channels, min_range, false, {0, 0, 0}, {1, 1, 1}};
    if (!mean.is_none() || !std.is_none()) {
        F32 m = F32::ensure(mean), s = F32::ensure(std);
        if (channels != 3 || !m || !s || m.size() != 3 || s.size() != 3)
            throw std::invalid_argument("mean and std must be given together, 3 values each, with channels=3");
        norm.standardise = true;
        for (int c = 0; c < 3; ++c) {
            norm.mean[c] = m.data()[c];
            norm.std[c] = s.data()[c];
        }
    }
    Batch b;
    b.jobs.reserve(n);
    for (std::size_t i = 0; i < n; ++i)
        b.jobs.push_back(make_job(b, i, clips[i], orders[i], shifts[i], flips[i], angles[i], outs[i], channels));
    py::gil_scoped_release release;
    echoclr::augment_clips(b.jobs, norm, threads);
}

py::array_t<uint8_t> warp_clip(const U8& clip, const I32& order, int dy, int dx, bool flip, double angle_deg) {
    if (clip.ndim() != 3) throw std::invalid_argument("clip must be uint8 (T, H, W)");
    const auto t = clip.shape(0), h = clip.shape(1), w = clip.shape(2);
    if (order.ndim() != 1 || order.shape(0) != t) throw std::invalid_argument("order must be int (T,)");
    for (py::ssize_t f = 0; f < t; ++f)
        if (order.data()[f] < 0 || order.data()[f] >= t) throw std::invalid_argument("frame order out of range");
    py::array_t<uint8_t> moved({t, h, w});
    echoclr::Scratch scratch;
    echoclr::ClipJob job{clip.data(), order.data(), dy, dx, flip, angle_deg,
                         static_cast<int>(t), static_cast<int>(h), static_cast<int>(w), nullptr};
    echoclr::warp_clip(job, moved.mutable_data(), scratch);
    return moved;
}

}  // namespace

void bind_augment(py::module_& m) {
    m.def("augment_clips", &augment_clips, py::arg("clips"), py::arg("orders"), py::arg("shifts"),
          py::arg("flips"), py::arg("angles"), py::arg("outs"), py::kw_only(), py::arg("channels"),
          py::arg("min_range"), py::arg("mean"), py::arg("std"), py::arg("threads"),
          "Augment clips into float32 outs (see echoclr.pipeline.cpu_ops.FusedAugment); releases the GIL.");
    m.def("warp_clip", &warp_clip, py::arg("clip"), py::arg("order"), py::arg("dy"), py::arg("dx"),
          py::arg("flip"), py::arg("angle_deg"),
          "Frame order, shift, flip and rotation of one uint8 clip (the kernel's first step, for tests).");
}

import DarkroomImageIO
import DarkroomModels
import DarkroomTensor

/// A ControlNet unit as a job asks for it (recipe `controlnet`): the control image comes from the image the job
/// works on through a preprocessor (A1111's "module"), or from a file of the user's, and is made for whatever
/// image a path of `run` denoises — the whole image, the crop around a mask (`inpaint_area: masked`), or each tile
/// of a tiled restoration — so the control always lines up with what is generated.
public struct ControlNetRequest: Sendable {
    public var model: ControlNetModel
    /// Runs on the working image (and the mask, for the inpaint condition) when `image` is nil.
    public var preprocessor: ControlPreprocessor
    /// The user's own control image, any size: resized to the working image as diffusers' `prepare_image` does
    /// (Pillow Lanczos), then cropped like it for masked-area inpainting and tiles.
    public var image: Image?
    public var weight: Float
    public var start: Double, end: Double
    public var guessMode: Bool

    public init(model: ControlNetModel, preprocessor: ControlPreprocessor = .none, image: Image? = nil, weight: Float = 1,
                start: Double = 0, end: Double = 1, guessMode: Bool = false) {
        (self.model, self.preprocessor, self.image, self.weight) = (model, preprocessor, image, weight)
        (self.start, self.end, self.guessMode) = (start, end, guessMode)
    }

    /// The user's control image at the job's (fitted) size [1, 3, H, W] in [0, 1], made once per job.
    func fullControl(height: Int, width: Int) throws -> Tensor? {
        guard let image else { return nil }
        return try ControlImage.levels(PlanarImage8(imageTensor: ImageTensor.tensor(from: image))).tensor(width: width, height: height)
    }

    /// The unit for `work` ([1, 3, h, w] in [-1, 1]) and its mask, where `work` is `region` of the full image
    /// scaled to its size (nil: the full image itself). `full` is `fullControl`'s result.
    func unit(for work: Tensor, mask: Tensor?, full: Tensor?, region: CropBox?) throws -> ControlNetUnit {
        let (h, w) = (work.shape[2], work.shape[3])
        var control: Tensor
        if var full {
            if let box = region {
                full = full.slice(box.y1..<box.y2, axis: 2).slice(box.x1..<box.x2, axis: 3)
            }
            control = full
            if full.shape[2] != h || full.shape[3] != w {
                control = try ImageOps.resizeLanczos(PlanarImage8(unitTensor: full), width: w, height: h).unitTensor
            }
        } else {
            control = try preprocessor.controlTensor(image: work, mask: mask, width: w, height: h)
        }
        return ControlNetUnit(model: model, image: control, weight: weight, start: start, end: end, guessMode: guessMode)
    }
}

import DarkroomTensor

/// The state a discrete sigma scheduler (Euler, Euler ancestral, LMS) keeps between steps, with the
/// rules diffusers' three classes share: the timesteps and their σ (plus a final σ), the running step
/// index and the img2img begin index, `init_noise_sigma`, `scale_model_input` and `add_noise`.
struct SigmaSteps: Sendable {
    let spacing: TimestepSpacing
    private(set) var timesteps: [Float] = []
    /// σ for each entry of `timesteps`, plus the final σ (0, or σ_min): float32, as diffusers' `sigmas`.
    private(set) var sigmas: [Float]
    private(set) var stepIndex: Int?
    private(set) var beginIndex: Int?

    /// Before `setTimesteps` diffusers holds the full training table (descending) plus 0.
    init(spacing: TimestepSpacing, trainingSigmas: [Float]) {
        self.spacing = spacing
        sigmas = trainingSigmas.reversed() + [0]
    }

    /// max σ for linspace/trailing spacing, √(max σ² + 1) for leading.
    var initNoiseSigma: Float {
        let maxSigma = sigmas.max() ?? 0
        return spacing == .leading ? (maxSigma * maxSigma + 1).squareRoot() : maxSigma
    }

    /// A new schedule: the loop starts over (no step or begin index).
    mutating func reset(timesteps: [Float], sigmas: [Float]) {
        self.timesteps = timesteps
        self.sigmas = sigmas
        stepIndex = nil
        beginIndex = nil
    }

    mutating func setBeginIndex(_ index: Int) { beginIndex = index }

    /// After a step at `index`, the next one is `index + 1`.
    mutating func advance(past index: Int) { stepIndex = index + 1 }

    /// The index of the current step: the running step index, else the begin index (img2img), else the
    /// position of `timestep` in the schedule.
    /// Clamped to the steps that have a next σ, so a call past the end (a programming error) never traps.
    func index(for timestep: Float) -> Int {
        let index = stepIndex ?? beginIndex ?? position(of: timestep)
        return min(max(index, 0), max(sigmas.count - 2, 0))
    }

    /// `Scheduler.checkRunnable` for Euler (`strictlyDecreasing` false) and LMS (true).
    func checkRunnable(from beginIndex: Int, strictlyDecreasing: Bool, scheduler: String) throws {
        try SchedulerValidation.runSigmas(sigmas, from: beginIndex, count: timesteps.count,
                                          strictlyDecreasing: strictlyDecreasing, scheduler: scheduler)
    }

    /// `scale_model_input`: the sample divided by √(σ² + 1).
    func scaleModelInput(_ sample: Tensor, timestep: Float) -> Tensor {
        let sigma = sigmas[index(for: timestep)]
        let scale = (sigma * sigma + 1).squareRoot()
        return sample.mapScalars { $0 / scale }
    }

    /// `add_noise`: x + σ·noise, σ from the position of `timestep` when no begin index is set, else from
    /// the running step index (or the begin index before the loop has started).
    func addNoise(_ original: Tensor, noise: Tensor, timestep: Float) -> Tensor {
        let sigma = sigmas[min(max(beginIndex.map { stepIndex ?? $0 } ?? position(of: timestep), 0), sigmas.count - 1)]
        return Tensor.zipScalars(original, noise) { x, n in x + n * sigma }
    }

    /// The index of `timestep` in the schedule (diffusers raises when it is absent; this takes the nearest
    /// timestep instead of trapping — the pipeline always sets a begin index, so it never gets here).
    private func position(of timestep: Float) -> Int {
        if let found = SigmaSchedule.index(of: timestep, in: timesteps) { return found }
        return timesteps.indices.min { abs(timesteps[$0] - timestep) < abs(timesteps[$1] - timestep) } ?? 0
    }
}

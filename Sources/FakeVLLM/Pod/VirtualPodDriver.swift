/// The virtual-time driver of one pod, the simulator's counterpart of the live `EngineDriver`:
/// the same `PodCore`, with no clock. Its owner keeps the time and calls `advance` when
/// virtual time reaches `nextEvent`.
public struct VirtualPodDriver: Sendable {
    public private(set) var core: PodCore
    /// The step in flight; its tokens become visible at its end.
    public private(set) var step: StepOutcome?
    /// When an idle pod that was given work takes its first step.
    private var wake: Double?
    /// When this pod next needs the time: its step ends, or it wakes to start one. Stored, as
    /// the simulator reads it after every event; every change of `step` or `wake` sets it.
    public private(set) var nextEvent: Double?

    public init(core: PodCore) {
        self.core = core
    }

    /// A sequence reaches the engine at `now`; an idle pod wakes up to step.
    public mutating func submit(_ request: EngineRequest, now: Double) {
        core.submit(request, now: now)
        wakeIfIdle(now: now)
    }

    /// Puts a fault on the pod or lifts it; lifting may let an idle pod step again.
    public mutating func apply(_ fault: PodFault, now: Double) {
        core.apply(fault)
        wakeIfIdle(now: now)
    }

    /// Loads registered adapters into the host cache (a fleet's `preload: true`).
    public mutating func preload(_ adapters: [String]) { core.preload(adapters) }

    public mutating func markReady() { core.markReady() }
    public mutating func beginDraining() { core.beginDraining() }
    public mutating func recordAccepted(model: String?) { core.recordAccepted(model: model) }
    public mutating func drawInjectedFault() -> FaultInjection.Kind? { core.drawInjectedFault() }

    /// Ends a sequence whose client went away; freed blocks may let an idle pod step again.
    public mutating func abort(_ id: RequestID, now: Double) {
        _ = core.abort(id, now: now)
        wakeIfIdle(now: now)
    }

    /// Virtual time has reached `nextEvent`. When a step ended, returns it (its tokens are now
    /// out) and starts the next one if the core's rule says stepping goes on; when the pod
    /// woke, starts its first step and returns nil.
    public mutating func advance(now: Double) -> StepOutcome? {
        defer { nextEvent = step?.end ?? wake }
        // Moved out, not copied: a copy would retain and release the step's progress list.
        if let finished = step.take() {
            if core.continuesStepping(after: finished) { step = core.step(at: core.stepStart(now: now, continuing: true)) }
            return finished
        }
        if wake != nil {
            wake = nil
            step = core.step(at: core.stepStart(now: now, continuing: false))
        }
        return nil
    }

    private mutating func wakeIfIdle(now: Double) {
        guard step == nil, wake == nil, core.canStep else { return }
        wake = now + PodCore.arrivalWindow
        nextEvent = wake
    }
}

import Foundation
import Logging
import NIOCore

/// Receives what the engine produced for one sequence.
protocol SequenceSink: AnyObject {
    func receive(_ progress: RequestProgress)
}

/// The real-time driver: runs a pod's `PodCore` on one event loop, sleeping each step's
/// emulated duration (divided by `timeScale`) before its tokens become visible, and hands
/// tokens to the HTTP responses. Everything here is confined to `loop`.
final class EngineDriver: @unchecked Sendable {
    let loop: EventLoop
    /// The pod's rules and state; the router admits requests through it.
    var core: PodCore
    let metrics: EngineMetrics
    let timeScale: Double
    private let origin = NIODeadline.now()
    private var sinks: [RequestID: SequenceSink] = [:]
    private var stepInFlight = false
    /// Called with each step as its tokens are delivered (traces, tests).
    var stepObserver: ((StepOutcome) -> Void)?
    /// Where the engine's warnings go, as vLLM's engine logs them.
    var engineLog: Logger?
    private lazy var statsLine = EngineStatsLine(now: now)

    /// Logs vLLM's periodic engine stats line for the interval since the last one.
    func logStats(to logger: Logger) {
        let engine = core.engine
        let (level, text) = statsLine.next(
            now: now, totals: metrics.statsTotals, running: engine.numRunning, waiting: engine.numWaiting,
            kvCacheUsage: engine.kvCacheUsage)
        logger.log(level: level, "\(text)")
    }

    init(loop: EventLoop, core: PodCore, metrics: EngineMetrics, timeScale: Double) {
        self.loop = loop
        self.core = core
        self.metrics = metrics
        self.timeScale = timeScale
        metrics.refreshGauges(core.engine, wallClock: Date().timeIntervalSince1970)
    }

    /// Emulated seconds since the server started.
    var now: Double {
        Double((NIODeadline.now() - origin).nanoseconds) / 1e9 * timeScale
    }

    func submit(_ request: EngineRequest, sink: SequenceSink) {
        loop.preconditionInEventLoop()
        core.submit(request, now: now)
        sinks[request.id] = sink
        scheduleStep()
    }

    /// Ends a sequence whose client went away; its blocks are freed at once.
    func abort(_ id: RequestID) {
        loop.preconditionInEventLoop()
        sinks[id] = nil
        if let finished = core.abort(id, now: now) {
            metrics.recordFinished(finished)
            metrics.refreshGauges(core.engine, wallClock: Date().timeIntervalSince1970)
            scheduleStep()  // freed blocks may let a waiting request in
        }
    }

    /// Puts a fault on the pod or lifts it; lifting a hang or KV pressure may let work go on.
    func apply(_ fault: PodFault) {
        core.apply(fault)
        metrics.refreshGauges(core.engine, wallClock: Date().timeIntervalSince1970)
        scheduleStep()
    }

    func preload(_ adapters: [String]) { core.preload(adapters) }

    /// SwiftNIO runs every task that is due before it polls its sockets again, so steps that
    /// re-armed themselves with no delay (the instant device) would starve all I/O until the
    /// batch drained. Zero-time steps therefore run back to back for at most `inlineBudget` of
    /// wall time, then pause `stepYield`: a deadline past "now" ends the event-loop tick, so new
    /// requests, scrapes and disconnects are read before the next burst.
    static let stepYield = TimeAmount.microseconds(20)
    static let inlineBudget = TimeAmount.microseconds(200)

    /// Back-to-back steps start where the previous one ended on the emulated timeline, not when
    /// this process got round to it: the time spent delivering tokens and a timer's lateness
    /// are this machine's, not the accelerator's (whose per-step overhead the cost model
    /// already counts). Up to this far behind (wall seconds) the timeline is kept; further
    /// behind, the machine has fallen behind and the timeline moves on from now.
    static let keepTimelineWithin = 0.005

    /// Arms the stepping loop after new work arrives; the pause (the core's arrival window, in
    /// wall time) lets the other requests that arrived in this tick join the first batch.
    private func scheduleStep() {
        guard !stepInFlight, core.canStep else { return }
        stepInFlight = true
        loop.scheduleTask(in: .nanoseconds(Int64(PodCore.arrivalWindow * 1e9))) { self.runSteps(continuing: false) }
    }

    /// The core's rule for when the next step starts, unless this machine has fallen behind.
    private func nextStepStart(continuing: Bool) -> Double {
        let current = now
        if continuing, current - core.lastStepEnd > Self.keepTimelineWithin * timeScale {
            // This machine could not keep up: the emulated accelerator loses the difference.
            lag += (current - core.lastStepEnd) / timeScale
            return current
        }
        return core.stepStart(now: current, continuing: continuing)
    }

    /// Wall seconds the emulation has fallen behind its timeline so far: steps that should
    /// have followed one another at once started late because this process was busy.
    private(set) var lag = 0.0

    private func runSteps(continuing: Bool) {
        let burstStart = self.burstStart ?? NIODeadline.now()
        self.burstStart = burstStart
        var continuing = continuing
        while true {
            guard let outcome = core.step(at: nextStepStart(continuing: continuing)) else {
                stop()
                return
            }
            continuing = true
            // Gauges show the batch while it runs, as a scrape of vLLM mid-step would.
            metrics.refreshGauges(core.engine, wallClock: Date().timeIntervalSince1970)
            let overBudget = NIODeadline.now() - burstStart > Self.inlineBudget
            if outcome.duration > 0 || overBudget {
                // The step's emulated time passes on a timer, during which I/O is served; a burst
                // that ran long waits at least `stepYield`, however short the step.
                var delay = TimeAmount.nanoseconds(Int64(min(max(0, (outcome.end - now) / timeScale), 86_400) * 1e9))
                if overBudget {
                    delay = max(delay, Self.stepYield)
                    self.burstStart = nil
                }
                loop.scheduleTask(in: delay) {
                    self.deliver(outcome)
                    self.continueStepping(after: outcome)
                }
                return
            }
            deliver(outcome)
            guard core.continuesStepping(after: outcome) else {
                stop()
                return
            }
        }
    }

    /// When the current burst of back-to-back steps began (nil after a yield).
    private var burstStart: NIODeadline?

    private func continueStepping(after outcome: StepOutcome) {
        if core.continuesStepping(after: outcome) {
            runSteps(continuing: true)
        } else {
            stop()
        }
    }

    /// Idle until `submit`, `abort` or a lifted fault arms the loop again.
    private func stop() {
        stepInFlight = false
        burstStart = nil
    }

    private func deliver(_ outcome: StepOutcome) {
        metrics.record(outcome, engine: core.engine, wallClock: Date().timeIntervalSince1970)
        stepObserver?(outcome)
        for finished in outcome.finished where finished.reason == .length && finished.generatedTokens == 0 {
            // V0's FINISHED_IGNORED: the prompt can never fit the KV cache (scheduler.py's warning).
            engineLog?.warning("Input prompt (\(finished.promptTokens) tokens) + lookahead slots (0) is too long and exceeds the capacity of block_manager")
        }
        for progress in outcome.progress {
            guard let sink = sinks[progress.id] else { continue }
            if progress.finishReason != nil { sinks[progress.id] = nil }
            sink.receive(progress)
        }
    }
}

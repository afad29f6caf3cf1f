import Foundation
import NIOCore

/// Receives what the engine produced for one sequence.
protocol SequenceSink: AnyObject {
    func receive(_ progress: RequestProgress)
}

/// The real-time driver: runs the pure `Engine` on one event loop, sleeping each step's
/// emulated duration (divided by `timeScale`) before its tokens become visible, and hands
/// tokens to the HTTP responses. Everything here is confined to `loop`.
final class EngineDriver: @unchecked Sendable {
    let loop: EventLoop
    private(set) var engine: Engine
    let metrics: EngineMetrics
    let timeScale: Double
    private let origin = NIODeadline.now()
    private var sinks: [RequestID: SequenceSink] = [:]
    private var stepInFlight = false
    /// Where the emulated timeline is: when the last step ends, and when the last request came.
    private var lastStepEnd = 0.0
    private var lastSubmit = 0.0
    private var nextRequestID: RequestID = 1
    /// API requests being served, for /load.
    var serverLoad = 0
    /// Chaos: every step takes this many times its emulated duration.
    var slowdown = 1.0
    /// Chaos: a hung engine takes no step until released (as a stopped process).
    var hung = false {
        didSet { if !hung { scheduleStep() } }
    }

    init(loop: EventLoop, engine: Engine, metrics: EngineMetrics, timeScale: Double) {
        self.loop = loop
        self.engine = engine
        self.metrics = metrics
        self.timeScale = timeScale
        metrics.refreshGauges(engine, wallClock: Date().timeIntervalSince1970)
    }

    /// Emulated seconds since the server started.
    var now: Double {
        Double((NIODeadline.now() - origin).nanoseconds) / 1e9 * timeScale
    }

    func makeRequestID() -> RequestID {
        defer { nextRequestID += 1 }
        return nextRequestID
    }

    func submit(_ request: EngineRequest, sink: SequenceSink) {
        loop.preconditionInEventLoop()
        engine.add(request)
        lastSubmit = now
        sinks[request.id] = sink
        scheduleStep()
    }

    /// Ends a sequence whose client went away; its blocks are freed at once.
    func abort(_ id: RequestID) {
        loop.preconditionInEventLoop()
        sinks[id] = nil
        if let finished = engine.abort(id, now: max(now, lastStepEnd)) {
            metrics.recordFinished(finished)
            metrics.refreshGauges(engine, wallClock: Date().timeIntervalSince1970)
            scheduleStep()  // freed blocks may let a waiting request in
        }
    }

    func cacheAdapter(_ name: String) { engine.cacheAdapter(name) }

    /// Chaos: KV pressure (see `Engine.setKVPressure`); lifting it may let waiting requests in.
    func setKVPressure(usable fraction: Double) {
        engine.setKVPressure(usable: fraction)
        metrics.refreshGauges(engine, wallClock: Date().timeIntervalSince1970)
        scheduleStep()
    }

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

    /// Arms the stepping loop after new work arrives; the short pause lets the other requests
    /// that arrived in this tick join the first batch.
    private func scheduleStep() {
        guard !stepInFlight, !hung, engine.hasWork else { return }
        stepInFlight = true
        loop.scheduleTask(in: Self.stepYield) { self.runSteps(continuing: false) }
    }

    /// When the next step starts: where the last one ended if stepping continues on schedule
    /// (never before a request it may run arrived), else now.
    private func nextStepStart(continuing: Bool) -> Double {
        let current = now
        guard continuing else { return max(current, lastStepEnd) }
        guard current - lastStepEnd <= Self.keepTimelineWithin * timeScale else {
            // This machine could not keep up: the emulated accelerator loses the difference.
            lag += (current - lastStepEnd) / timeScale
            return current
        }
        return max(lastStepEnd, lastSubmit)
    }

    /// Wall seconds the emulation has fallen behind its timeline so far: steps that should
    /// have followed one another at once started late because this process was busy.
    private(set) var lag = 0.0

    private func runSteps(continuing: Bool) {
        let burstStart = self.burstStart ?? NIODeadline.now()
        self.burstStart = burstStart
        var continuing = continuing
        while true {
            let start = nextStepStart(continuing: continuing)
            guard !hung, let outcome = engine.step(now: start) else {
                stop()
                return
            }
            continuing = true
            // Chaos slows the step down: it ends later than the model says.
            lastStepEnd = start + outcome.duration * slowdown
            // Gauges show the batch while it runs, as a scrape of vLLM mid-step would.
            metrics.refreshGauges(engine, wallClock: Date().timeIntervalSince1970)
            let overBudget = NIODeadline.now() - burstStart > Self.inlineBudget
            if outcome.duration > 0 || overBudget {
                // The step's emulated time passes on a timer, during which I/O is served; a burst
                // that ran long waits at least `stepYield`, however short the step.
                var delay = TimeAmount.nanoseconds(Int64(min(max(0, (lastStepEnd - now) / timeScale), 86_400) * 1e9))
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
            guard makesProgress(outcome), engine.hasWork else {
                continueStepping(after: outcome)
                return
            }
        }
    }

    /// When the current burst of back-to-back steps began (nil after a yield).
    private var burstStart: NIODeadline?

    /// Whether stepping again can change anything: a step that scheduled nothing and preempted
    /// nothing will be followed by the same empty step until a submit or an abort.
    private func makesProgress(_ outcome: StepOutcome) -> Bool {
        outcome.scheduledTokens > 0 || outcome.preemptions > 0
    }

    private func continueStepping(after outcome: StepOutcome) {
        if makesProgress(outcome), engine.hasWork {
            runSteps(continuing: true)
        } else {
            stop()
        }
    }

    /// Idle until `submit` or `abort` arms the loop again.
    private func stop() {
        stepInFlight = false
        burstStart = nil
    }

    private func deliver(_ outcome: StepOutcome) {
        metrics.record(outcome, engine: engine, wallClock: Date().timeIntervalSince1970)
        for progress in outcome.progress {
            guard let sink = sinks[progress.id] else { continue }
            if progress.finished != nil { sinks[progress.id] = nil }
            sink.receive(progress)
        }
    }
}

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
    private var lastStepEnd = 0.0
    private var nextRequestID: RequestID = 1
    /// API requests being served, for /load.
    var serverLoad = 0

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

    /// Starts the next step on a timer, never inline: a timer makes the event loop poll its
    /// sockets first, so zero-time steps (the instant device) cannot starve I/O, and requests
    /// that arrived meanwhile join the batch.
    private func scheduleStep(after delay: TimeAmount = .zero) {
        guard !stepInFlight, engine.hasWork else { return }
        stepInFlight = true
        loop.scheduleTask(in: delay) { self.runStep() }
    }

    private func runStep() {
        let start = max(now, lastStepEnd)
        guard let outcome = engine.step(now: start) else {
            stepInFlight = false
            return
        }
        lastStepEnd = outcome.end
        // Gauges show the batch while it runs, as a scrape of vLLM mid-step would.
        metrics.refreshGauges(engine, wallClock: Date().timeIntervalSince1970)
        let delay = TimeAmount.nanoseconds(Int64(outcome.duration / timeScale * 1e9))
        loop.scheduleTask(in: delay) {
            self.deliver(outcome)
            self.stepInFlight = false
            // A step that could schedule nothing waits for the next submit or abort instead
            // of spinning (the engine is sized so one request always fits; this is a backstop).
            if outcome.scheduledTokens > 0 { self.scheduleStep() }
        }
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

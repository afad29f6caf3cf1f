/// A scenario's chaos as a pure timeline: which actions are due by a time, each handed out once.
/// `understudy scenario` runs it against the clock, the simulator in virtual time.
public struct ChaosTimeline: Sendable {
    private let steps: [TimedAction]
    private var next = 0

    /// Actions at equal times keep their order.
    public init(_ steps: [TimedAction]) {
        self.steps = steps.enumerated().sorted { ($0.element.at, $0.offset) < ($1.element.at, $1.offset) }.map(\.element)
    }

    /// When the next action is due (seconds after the load starts), if any remain.
    public var nextTime: Double? { next < steps.count ? steps[next].at : nil }

    /// The actions due by `now`, in order.
    public mutating func actions(due now: Double) -> ArraySlice<TimedAction> {
        let start = next
        while next < steps.count, steps[next].at <= now { next += 1 }
        return steps[start..<next]
    }
}

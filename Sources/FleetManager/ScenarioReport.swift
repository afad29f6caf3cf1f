import Foundation
import Load

/// What the clients of a scenario saw: every request's record, the actions as they ran, and
/// when each pod was routable; summarised per phase (between actions) and per fault.
public struct ScenarioReport: Sendable {
    public var name: String
    public var duration: Double
    public var records: [RequestRecord]
    public var actions: [ActionRecord]
    /// Per pod, when it joined or left the gateway's candidates (the first entry is its state
    /// when watching began or when it appeared).
    public var membership: [String: [Membership]]
    /// Pod name → address, for matching `servedBy`.
    public var addresses: [String: String]

    public struct ActionRecord: Sendable {
        public var at: Double
        public var action: ChaosAction
        public var failure: String?
    }

    public struct Membership: Sendable, Equatable {
        public var at: Double
        public var routable: Bool
    }

    // MARK: Totals

    public var sent: Int { records.count }
    public var succeeded: Int { records.count { $0.outcome.isSuccess } }
    public var shed: Int { records.count { $0.outcome.isShed } }
    public var retried: Int { records.count(where: \.retried) }
    /// Failures other than shedding, by cause.
    public var failuresByCause: [(cause: String, count: Int)] {
        let failed = records.filter { !$0.outcome.isSuccess && !$0.outcome.isShed }
        return Dictionary(grouping: failed, by: { $0.outcome.description }).map { ($0.key, $0.value.count) }.sorted { $0.count > $1.count }
    }
    /// Requests sent more than 10 ms after they were due: the client machine fell behind.
    public var lateSends: Int { records.count { $0.lateness > 0.010 } }

    // MARK: Phases

    /// The stretch of the run between two actions, and what its requests saw.
    public struct Phase: Sendable {
        public var label: String
        public var start: Double
        public var end: Double
        public var records: [RequestRecord]

        public var succeeded: Int { records.count { $0.outcome.isSuccess } }
        public var shed: Int { records.count { $0.outcome.isShed } }
        public var failed: Int { records.count - succeeded - shed }
        /// End-to-end latency and time to first token of the successful requests.
        public var latency: Percentiles { Percentiles(records.filter { $0.outcome.isSuccess }.map(\.latency)) }
        public var timeToFirstToken: Percentiles { Percentiles(records.filter { $0.outcome.isSuccess }.compactMap(\.timeToFirstToken)) }
    }

    /// Before the first action, then from each action to the next; a request belongs to the
    /// phase it was sent in.
    public var phases: [Phase] {
        var bounds: [(label: String, start: Double)] = [("before", 0)]
        bounds += actions.map { ("after \($0.action.summary)", $0.at) }
        return bounds.enumerated().map { index, bound in
            let end = index + 1 < bounds.count ? bounds[index + 1].start : .infinity
            return Phase(
                label: bound.label, start: bound.start, end: min(end, duration),
                records: records.filter { $0.sent >= bound.start && $0.sent < end })
        }
    }

    // MARK: Faults

    /// What one fault did: how soon the gateway stopped routing to the pod, when it could route
    /// there again, and the failures clients saw until the next action.
    public struct FaultEffect: Sendable {
        public var action: ActionRecord
        /// Seconds from the action until the pod left the candidates (0: it was out already);
        /// nil if it stayed routable.
        public var stoppedRouting: Double?
        /// Seconds from the action until it was routable again; nil if it was not (yet).
        public var routableAgain: Double?
        /// Requests in flight at the action or sent after it (until the next action) that failed.
        public var clientFailures: Int
        /// Seconds from the action until the last of those failures ended.
        public var lastFailure: Double?
    }

    public var faults: [FaultEffect] {
        actions.enumerated().compactMap { index, action -> FaultEffect? in
            switch action.action {
            case .restore, .scale: return nil
            default: break
            }
            let changes = membership[action.action.target] ?? []
            let before = changes.last { $0.at <= action.at }
            let left = before?.routable == false ? before : changes.first { $0.at > action.at && !$0.routable }
            let back = left.flatMap { left in changes.first { $0.at > max(left.at, action.at) && $0.routable } }
            let until = index + 1 < actions.count ? actions[index + 1].at : .infinity
            let failures = records.filter { $0.finished >= action.at && $0.sent < until && !$0.outcome.isSuccess && !$0.outcome.isShed }
            return FaultEffect(
                action: action, stoppedRouting: left.map { max(0, $0.at - action.at) }, routableAgain: back.map { $0.at - action.at },
                clientFailures: failures.count, lastFailure: failures.map(\.finished).max().map { $0 - action.at })
        }
    }

    // MARK: Text

    /// The report as `understudy scenario` prints it.
    public func render() -> String {
        var lines: [String] = []
        func percent(_ part: Int, _ whole: Int) -> String { whole == 0 ? "–" : String(format: "%.1f%%", Double(part) / Double(whole) * 100) }
        lines.append("Scenario \(name): \(Self.seconds(duration)) of load, \(sent) requests")
        lines.append("  succeeded \(succeeded) (\(percent(succeeded, sent))), shed (429) \(shed), failed \(sent - succeeded - shed), retried by the gateway \(retried)")
        let causes = failuresByCause
        if !causes.isEmpty { lines.append("  failed by cause: " + causes.map { "\($0.cause): \($0.count)" }.joined(separator: "; ")) }
        if lateSends > 0 {
            lines.append("  note: \(lateSends) requests were sent more than 10 ms late — this machine, not the fleet, limited those")
        }
        for action in actions where action.failure != nil {
            lines.append("  action at \(Self.seconds(action.at)) failed: \(action.action.summary): \(action.failure!)")
        }
        lines.append("")
        var table = [["PHASE (BY SEND TIME)", "FROM", "SENT", "OK", "FAILED", "SHED", "E2E p50/p90/p99 ms", "TTFT p50/p90/p99 ms"]]
        for phase in phases {
            table.append([
                phase.label, Self.seconds(phase.start), "\(phase.records.count)", "\(phase.succeeded)", "\(phase.failed)", "\(phase.shed)",
                Self.triple(phase.latency), Self.triple(phase.timeToFirstToken),
            ])
        }
        lines += TextTable.lines(table, indent: "  ")
        let faults = self.faults
        if !faults.isEmpty {
            lines.append("")
            var table = [["FAULT", "AT", "GATEWAY STOPPED ROUTING", "ROUTABLE AGAIN", "CLIENT FAILURES", "LAST FAILURE"]]
            for fault in faults {
                table.append([
                    fault.action.action.summary, Self.seconds(fault.action.at),
                    fault.stoppedRouting.map { "+" + Self.milliseconds($0) } ?? "kept routing",
                    fault.routableAgain.map { "+" + Self.seconds($0) } ?? "–",
                    "\(fault.clientFailures)", fault.lastFailure.map { "+" + Self.seconds($0) } ?? "–",
                ])
            }
            lines += TextTable.lines(table, indent: "  ")
        }
        return lines.joined(separator: "\n")
    }

    static func seconds(_ value: Double) -> String { String(format: "%.2f s", value) }
    static func milliseconds(_ value: Double) -> String { String(format: "%.0f ms", value * 1000) }

    static func triple(_ sample: Percentiles) -> String {
        guard sample.count > 0 else { return "–" }
        return [50.0, 90, 99].map { String(format: "%.0f", sample.value(at: $0)! * 1000) }.joined(separator: "/")
    }
}

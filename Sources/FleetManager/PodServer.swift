import FakeVLLM
import Foundation

/// A pod's running server as the fleet drives it: an emulated vLLM server in this process, or
/// an `understudy serve` child process (`understudy up --processes`).
protocol PodServer: AnyObject, Sendable {
    /// The port it listens on.
    var port: Int { get }
    /// Loads registered adapters into the host cache (`preload: true`).
    func preload(adapters: [String]) async throws
    /// The model has loaded: /health turns 200.
    func markReady() async throws
    /// Terminating: no new requests; what is in flight finishes.
    func beginDraining() async throws
    /// Requests still being answered (a process that exited has none).
    func requestsInFlight() async throws -> Int
    /// Ends it at once, connections and all (a crash, SIGKILL).
    func stop() async throws
    /// Hang, slow, errors, partition, KV pressure or restore.
    func perform(_ fault: ChaosAction) async throws
    /// The kubelet's probe: does `GET /health` answer 200 within `timeout` seconds?
    func probe(timeout: Double) async -> Bool
}

extension VLLMServer: PodServer {
    func perform(_ fault: ChaosAction) async throws { try await apply(fault) }

    /// Probed without a socket, with the same verdicts and timing: a hung server's probe fails
    /// only once the timeout has passed.
    func probe(timeout: Double) async -> Bool {
        switch await checkHealth() {
        case .status(let status): return status == 200
        case .refused: return false
        case .silent:
            // Cancellation only cuts the wait short: the probe fails either way.
            try? await Task.sleep(for: .nanoseconds(Int64(timeout * 1e9)))
            return false
        }
    }
}

extension VLLMServer {
    /// Puts the server under a fault (or lifts them all on restore). Kill, drain and scale act
    /// on pods, not servers, and are refused here.
    public func apply(_ fault: ChaosAction) async throws {
        switch fault {
        case .hang: try await apply(PodFault.hang(true))
        case .slow(_, let factor): try await apply(PodFault.slow(factor))
        case .errors(_, let injection): try await apply(PodFault.errors(injection))
        case .partition: try await apply(PodFault.partition(true))
        case .kvPressure(_, let usable): try await apply(PodFault.kvPressure(usable: usable))
        case .restore: try await apply(PodFault.restore)
        case .kill, .drain, .scale:
            throw FleetError("\(fault.verb) acts on a pod, not on its server")
        }
    }
}

/// The lines a fleet writes to an `understudy serve --control-stdin` child: `ready`, `drain`,
/// `preload ADAPTER`, `health ID` (answered on stdout as `health ID STATUS`), or a fault as
/// `VERB key=value…` (`slow factor=3`, `restore`). The child exits when its stdin closes, so a
/// fleet that dies takes its pods with it.
public enum PodControl: Sendable, Equatable {
    case ready
    case drain
    case preload(String)
    case health(Int)
    case fault(ChaosAction)

    public var line: String {
        switch self {
        case .ready: "ready"
        case .drain: "drain"
        case .preload(let adapter): "preload \(adapter)"
        case .health(let id): "health \(id)"
        case .fault(let action):
            ([action.verb] + action.parameters.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }).joined(separator: " ")
        }
    }

    public init(line: String) throws(FleetError) {
        let words = line.split(separator: " ").map(String.init)
        switch words.first {
        case "ready": self = .ready
        case "drain": self = .drain
        case "preload" where words.count == 2: self = .preload(words[1])
        case "health" where words.count == 2 && Int(words[1]) != nil: self = .health(Int(words[1])!)
        case let verb?:
            var parameters: [String: String] = [:]
            for word in words.dropFirst() {
                let pair = word.split(separator: "=", maxSplits: 1).map(String.init)
                guard pair.count == 2 else { throw FleetError("control line \(line): expected key=value, got \(word)") }
                parameters[pair[0]] = pair[1]
            }
            self = .fault(try ChaosAction.pod("self", verb: verb, parameters))
        case nil:
            throw FleetError("empty control line")
        }
    }
}

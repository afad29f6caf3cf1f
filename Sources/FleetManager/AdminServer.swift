import FakeVLLM
import Foundation
import InferenceAPI
import NIOCore
import NIOHTTP1
import NIOPosix

/// The fleet's admin API (port 8070, loopback unless told otherwise):
/// - `GET /pods`: every pod as JSON (name, pool, address, state, labels, restarts, faults);
///   `GET /pods?watch=true`: the same list again, one JSON line per change — the registry's
///   list + watch;
/// - `POST /pods/NAME/kill|hang|partition|drain|restore`, `POST /pods/NAME/slow?factor=F`,
///   `POST /pods/NAME/errors?rate=R&status=CODE` or `…&kind=cut`,
///   `POST /pods/NAME/kv-pressure?usable=U`: chaos (`ChaosAction`);
/// - `POST /pools/NAME/scale?replicas=N`: scale a pool;
/// - `GET /sd`: the pods as Prometheus HTTP service discovery targets (`http_sd_configs`), so a
///   Prometheus follows pods as they come, go and change ports.
/// Errors use the OpenAI envelope, as everywhere else in the stack.
///
/// A web page must not be able to break the fleet through a browser on this machine: requests
/// carrying a foreign `Origin`, form posts, and (on a loopback listener) a `Host` that is not a
/// loopback name (DNS rebinding) are refused with 403 or 415; with a token, every request
/// needs `Authorization: Bearer TOKEN`.
public enum AdminServer {
    public static func start(
        fleet: Fleet, host: String, port: Int, token: String? = nil, group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> Channel {
        let guardrails = AdminGuard(loopbackOnly: AdminGuard.isLoopback(host), token: token)
        return try await HTTPListener.bind(host: host, port: port, group: group) { AdminRouter(fleet: fleet, guardrails: guardrails) }
    }

    /// The most replicas `scale` gives a pool (in-process pods share this machine).
    public static let maxReplicas = 256

    /// A pod as `GET /pods` lists it.
    static func json(_ pod: PodRecord, faults: [String]) -> JSONValue {
        var labels = JSONObject()
        for (key, value) in pod.labels.sorted(by: { $0.key < $1.key }) { labels[key] = .string(value) }
        return .object([
            "name": .string(pod.name), "pool": .string(pod.pool), "address": .string(pod.address), "state": .string(pod.phase.status),
            "ready": .bool(pod.isReady), "restarts": .integer(pod.restarts),
            "labels": .object(labels),
            "faults": .array(faults.map { .string($0) }),
        ])
    }

    /// Prometheus's http_sd format: a target group per pod whose process runs, labelled
    /// `pod` and `pool`, with Kubernetes SD's metadata as `__meta_understudy_*` labels (pod
    /// labels under `__meta_understudy_pod_label_<name>`, the name sanitized as Kubernetes SD
    /// sanitizes it) for relabeling.
    static func serviceDiscovery(_ pods: [PodRecord]) -> ByteBuffer {
        var groups: [JSONValue] = []
        for pod in pods {
            switch pod.phase {
            case .starting, .ready, .terminating: break
            case .pending, .crashLoopBackOff, .terminated: continue  // no process listens
            }
            var labels: JSONObject = [
                "pod": .string(pod.name), "pool": .string(pod.pool),
                "__meta_understudy_pod_name": .string(pod.name), "__meta_understudy_pod_phase": .string(pod.phase.status),
                "__meta_understudy_pod_ready": .string(pod.isReady ? "true" : "false"),
                "__meta_understudy_pod_restarts": .string(String(pod.restarts)),
            ]
            for (key, value) in pod.labels.sorted(by: { $0.key < $1.key }) {
                labels["__meta_understudy_pod_label_" + Prometheus.sanitizedLabelName(key)] = .string(value)
            }
            groups.append(.object(["targets": .array([.string(pod.address)]), "labels": .object(labels)]))
        }
        var buffer = ByteBuffer()
        buffer.writeJSON(.array(groups))
        return buffer
    }

    static func listing(_ fleet: Fleet) async -> ByteBuffer {
        var items: [JSONValue] = []
        for pod in fleet.list() { items.append(json(pod, faults: await fleet.faults(of: pod.name))) }
        var buffer = ByteBuffer()
        buffer.writeJSON(.array(items))
        return buffer
    }
}

/// Serves the admin routes; each runs on the fleet actor and answers on the connection's loop.
final class AdminRouter: HTTPRequestRouter {
    let fleet: Fleet
    let guardrails: AdminGuard
    let maxBodyBytes = 64 * 1024

    init(fleet: Fleet, guardrails: AdminGuard) {
        self.fleet = fleet
        self.guardrails = guardrails
    }

    func route(_ request: IncomingRequest, writer: ResponseWriter) -> (any InFlightResponse)? {
        if let refusal = guardrails.refusal(request) {
            writer.respond(refusal)
            return nil
        }
        let bound = NIOLoopBound(writer, eventLoop: writer.eventLoop)
        let loop = writer.eventLoop
        let fleet = self.fleet
        let path = request.path.split(separator: "/").map(String.init)
        let query = Self.query(request.uri)
        if request.method == .GET, path == ["pods"], query["watch"] == "true" {
            let watch = Watch(writer: bound, loop: loop)
            watch.start(fleet)
            return watch
        }
        Self.answer(bound, on: loop, method: request.method, path: path, query: query, fleet: fleet)
        return nil
    }

    /// Runs a route on the fleet actor and writes its answer back on the connection's loop.
    private static func answer(
        _ writer: NIOLoopBound<ResponseWriter>, on loop: EventLoop, method: HTTPMethod, path: [String], query: [String: String], fleet: Fleet
    ) {
        Task {
            let (status, body) = await handle(method, path, query, fleet)
            loop.execute { writer.value.respond(status: status, contentType: "application/json", body: body) }
        }
    }

    static func handle(_ method: HTTPMethod, _ path: [String], _ query: [String: String], _ fleet: Fleet) async -> (HTTPResponseStatus, ByteBuffer) {
        func error(_ status: Int, _ message: String) -> (HTTPResponseStatus, ByteBuffer) {
            (HTTPResponseStatus(statusCode: status), APIError(status: status, type: status == 404 ? "NotFoundError" : "BadRequestError", message: message).body())
        }
        switch (method, path.count, path.first) {
        case (.GET, 1, "pods"):
            return (.ok, await AdminServer.listing(fleet))
        case (.GET, 1, "sd"):
            return (.ok, AdminServer.serviceDiscovery(fleet.list()))
        case (.POST, 3, "pods"):
            let action: ChaosAction
            do {
                action = try ChaosAction.pod(path[1], verb: path[2], query)
            } catch let refused {
                return error(ChaosAction.podVerbs.contains(path[2]) ? 400 : 404, refused.description)
            }
            do {
                try await fleet.perform(action)
            } catch {
                return (.notFound, APIError(status: 404, type: "NotFoundError", message: "\(error)").body())
            }
            return (.ok, await AdminServer.listing(fleet))
        case (.POST, 3, "pools") where path[2] == "scale":
            guard let replicas = query["replicas"].flatMap(Int.init), (0...AdminServer.maxReplicas).contains(replicas) else {
                return error(400, "scale needs ?replicas=N with 0 ≤ N ≤ \(AdminServer.maxReplicas)")
            }
            do {
                try await fleet.perform(.scale(pool: path[1], replicas: replicas))
            } catch {
                return (.notFound, APIError(status: 404, type: "NotFoundError", message: "\(error)").body())
            }
            return (.ok, await AdminServer.listing(fleet))
        default:
            return error(404, "no route \(method) /\(path.joined(separator: "/")); see GET /pods")
        }
    }

    static func query(_ uri: String) -> [String: String] {
        guard let mark = uri.firstIndex(of: "?") else { return [:] }
        var pairs: [String: String] = [:]
        for pair in uri[uri.index(after: mark)...].split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1).map { String($0).removingPercentEncoding ?? String($0) }
            pairs[parts[0]] = parts.count > 1 ? parts[1] : ""
        }
        return pairs
    }

    /// `GET /pods?watch=true`: the pod list now and after every change, one JSON line each,
    /// until the client goes away.
    final class Watch: InFlightResponse, @unchecked Sendable {
        private let writer: NIOLoopBound<ResponseWriter>
        private let loop: EventLoop
        private var task: Task<Void, Never>?
        private(set) var isDone = false

        init(writer: NIOLoopBound<ResponseWriter>, loop: EventLoop) {
            self.writer = writer
            self.loop = loop
        }

        func start(_ fleet: Fleet) {
            writer.value.writeHead(status: .ok, contentType: "application/x-ndjson", contentLength: nil)
            let (changes, continuation) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
            let writer = self.writer
            let loop = self.loop
            task = Task {
                // A watch ends only by cancellation, when the client has gone: nothing to report.
                let watcher = Task { try? await fleet.registry.watch { _ in continuation.yield() } }
                for await _ in changes {
                    // A client that stops reading holds one pending change, not a growing buffer:
                    // changes coalesce while it cannot take more. A loop that is gone (the server
                    // stopping) ends the wait; the write after it then goes nowhere, harmlessly.
                    while !Task.isCancelled, (try? await loop.submit({ writer.value.isWritable }).get()) == false {
                        // Cancelled means the client went away: the loop condition ends the wait.
                        try? await Task.sleep(for: .milliseconds(50))
                    }
                    var listing = await AdminServer.listing(fleet)
                    listing.writeStaticString("\n")
                    let line = listing
                    loop.execute { writer.value.writeBody(line) }
                }
                watcher.cancel()
            }
        }

        func cancel() {
            isDone = true
            task?.cancel()
        }
    }
}

/// What the admin API refuses before routing: another origin, form posts, foreign Host names
/// on a loopback listener, and requests without the token when one is set.
struct AdminGuard: Sendable {
    let loopbackOnly: Bool
    let token: String?

    /// `localhost`, `::1` (bracketed or not), or an IPv4 literal in 127.0.0.0/8 — exactly;
    /// `127.0.0.1.example.com` is a name anyone can point anywhere.
    static func isLoopback(_ host: some StringProtocol) -> Bool {
        var bare = Substring(host)
        if bare.hasPrefix("["), bare.hasSuffix("]") { bare = bare.dropFirst().dropLast() }
        if bare.lowercased() == "localhost" || bare == "::1" { return true }
        let octets = bare.split(separator: ".", omittingEmptySubsequences: false)
        guard octets.count == 4, octets[0] == "127" else { return false }
        return octets.allSatisfy { octet in
            (1...3).contains(octet.count) && octet.allSatisfy { ("0"..."9").contains($0) } && UInt8(octet) != nil
        }
    }

    /// The host of an authority `host[:port]` or `[v6][:port]`; nil when it is anything else
    /// (user information, a path, a port that is not a number).
    static func hostName(_ authority: Substring) -> Substring? {
        guard !authority.isEmpty, !authority.contains("@"), !authority.contains("/") else { return nil }
        let host: Substring
        let rest: Substring
        if authority.hasPrefix("[") {
            guard let end = authority.firstIndex(of: "]") else { return nil }
            host = authority[...end]
            rest = authority[authority.index(after: end)...]
        } else {
            let parts = authority.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
            host = parts[0]
            rest = parts.count > 1 ? authority[authority.index(before: parts[1].startIndex)...] : ""
        }
        if !rest.isEmpty {
            guard rest.hasPrefix(":"), rest.count > 1, rest.dropFirst().allSatisfy(\.isNumber) else { return nil }
        }
        return host
    }

    /// An `Origin` (`scheme://host[:port]`, nothing more) of a page served from loopback.
    static func isLoopbackOrigin(_ origin: String) -> Bool {
        for scheme in ["http://", "https://"] where origin.lowercased().hasPrefix(scheme) {
            guard let host = hostName(origin.dropFirst(scheme.count)) else { return false }
            return isLoopback(host)
        }
        return false
    }

    func refusal(_ request: IncomingRequest) -> APIError? {
        func forbidden(_ message: String) -> APIError { APIError(status: 403, type: "Forbidden", message: message) }
        if let token, !BearerToken.matches(request.headers, token) {
            return APIError(status: 401, type: "Unauthorized", message: "the admin API needs Authorization: Bearer <token> (understudy up --admin-token)")
        }
        if let origin = request.headers.first(name: "origin"), !Self.isLoopbackOrigin(origin) {
            // A browser names the page's origin; only pages served from this machine's loopback may call.
            return forbidden("cross-origin requests are refused (Origin: \(origin))")
        }
        if request.method == .POST, let type = request.headers.first(name: "content-type")?.lowercased(),
           type.hasPrefix("application/x-www-form-urlencoded") || type.hasPrefix("multipart/form-data") || type.hasPrefix("text/plain") {
            // The bodies a cross-site HTML form can send; the admin API takes its arguments in the query.
            return APIError(status: 415, type: "UnsupportedMediaType", message: "form posts are refused; send the action's arguments in the query")
        }
        if loopbackOnly {
            let given = request.headers.first(name: "host")
            guard let given, let host = Self.hostName(Substring(given)), Self.isLoopback(host) else {
                return forbidden("the admin API listens on loopback and answers only requests addressed to it (Host: \(given ?? "none"))")
            }
        }
        return nil
    }
}

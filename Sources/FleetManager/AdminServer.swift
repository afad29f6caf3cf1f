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
/// - `POST /pods/NAME/kill|hang|restore|delete`, `POST /pods/NAME/slow?factor=F`,
///   `POST /pods/NAME/errors?rate=R&status=CODE` or `…&kind=cut`: chaos;
/// - `POST /pools/NAME/scale?replicas=N`: scale a pool.
/// Errors use the OpenAI envelope, as everywhere else in the stack.
public enum AdminServer {
    public static func start(fleet: Fleet, host: String, port: Int, group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton) async throws -> Channel {
        try await HTTPListener.bind(host: host, port: port, group: group) { AdminRouter(fleet: fleet) }
    }

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
    let maxBodyBytes = 64 * 1024

    init(fleet: Fleet) { self.fleet = fleet }

    func route(_ request: IncomingRequest, writer: ResponseWriter) -> (any InFlightResponse)? {
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
        case (.POST, 3, "pods"):
            let name = path[1]
            do {
                switch path[2] {
                case "kill": try await fleet.kill(name)
                case "hang": try await fleet.hang(name)
                case "restore": try await fleet.restore(name)
                case "delete": try await fleet.delete(name)
                case "errors":
                    guard let rate = query["rate"].flatMap(Double.init), rate >= 0, rate <= 1 else {
                        return error(400, "errors needs ?rate=R (0…1) and ?status=CODE or ?kind=cut")
                    }
                    if query["kind"] == "cut" {
                        try await fleet.errors(name, FaultInjection(rate: rate, kind: .cutStream))
                    } else {
                        guard let status = query["status"].flatMap(Int.init), (400...599).contains(status) else {
                            return error(400, "errors needs ?status=CODE (400…599) or ?kind=cut")
                        }
                        try await fleet.errors(name, FaultInjection(rate: rate, kind: .status(status)))
                    }
                case "slow":
                    guard let factor = query["factor"].flatMap(Double.init) else { return error(400, "slow needs ?factor=F (F > 0)") }
                    try await fleet.slow(name, factor: factor)
                default: return error(404, "no action \(path[2]); actions: kill, hang, slow, errors, restore, delete")
                }
            } catch {
                return (.notFound, APIError(status: 404, type: "NotFoundError", message: "\(error)").body())
            }
            return (.ok, await AdminServer.listing(fleet))
        case (.POST, 3, "pools") where path[2] == "scale":
            guard let replicas = query["replicas"].flatMap(Int.init), replicas >= 0 else { return error(400, "scale needs ?replicas=N (N ≥ 0)") }
            do {
                try await fleet.scale(path[1], replicas: replicas)
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
                let watcher = Task { try? await fleet.registry.watch { _ in continuation.yield() } }
                for await _ in changes {
                    var line = await AdminServer.listing(fleet)
                    line.writeStaticString("\n")
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

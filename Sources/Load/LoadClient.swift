import InferenceAPI
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// One request to send: an OpenAI-style JSON body POSTed to a path (or a GET without one),
/// with extra headers.
public struct LoadRequest: Sendable {
    public var stream: String
    public var method: HTTPMethod
    public var path: String
    public var body: ByteBuffer?
    public var headers: [(String, String)]
    /// The body asks for `"stream": true`: the answer is read as server-sent events.
    public var streaming: Bool

    public init(stream: String, path: String = "/v1/completions", body: ByteBuffer, headers: [(String, String)] = [], streaming: Bool) {
        self.stream = stream
        self.method = .POST
        self.path = path
        self.body = body
        self.headers = headers
        self.streaming = streaming
    }

    /// A GET of `path` (a health check, a model list).
    public static func get(_ path: String, stream: String) -> LoadRequest {
        var request = LoadRequest(stream: stream, path: path, body: ByteBuffer(), streaming: false)
        request.method = .GET
        request.body = nil
        return request
    }
}

/// An HTTP/1.1 load client for one target, on SwiftNIO: keep-alive connections reused as a
/// browser or the OpenAI SDK's pool would, one request per connection at a time, each request
/// timed from send to its last byte. It never retries: what the target answered is what is
/// recorded.
public final class LoadClient: Sendable {
    public let host: String
    public let port: Int
    /// Longest a request may take before the client gives up on it.
    public let timeout: TimeAmount
    private let group: any EventLoopGroup
    private let epoch: NIODeadline
    private let idle = NIOLockedValueBox<[Connection]>([])

    public init(host: String, port: Int, group: any EventLoopGroup, timeout: TimeAmount = .seconds(300), epoch: NIODeadline = .now()) {
        self.host = host
        self.port = port
        self.group = group
        self.timeout = timeout
        self.epoch = epoch
    }

    /// Seconds since the client's epoch: the time base of every record.
    public func now() -> Double { Double((NIODeadline.now() - epoch).nanoseconds) / 1e9 }

    /// Sends a request (due at `scheduled`, seconds since the epoch) and records its answer.
    public func send(_ request: LoadRequest, scheduled: Double? = nil) async -> RequestRecord {
        let sent = now()
        var record = RequestRecord(stream: request.stream, scheduled: scheduled ?? sent, sent: sent, finished: sent, outcome: .ok)
        // A kept-alive connection the server closed while it sat idle is found out before
        // anything is written on it; the request then goes on a new connection, once: a new
        // connection closed before the request (a server over its connection limit) is the
        // answer. Once written, a request is not sent again, whatever happens to it.
        var retry = FreshConnectionRetry()
        while true {
            let connection: Connection
            do {
                connection = try await takeConnection(fresh: retry.isSpent)
            } catch {
                record.finished = now()
                record.outcome = .connectionFailed(Self.describe(error))
                return record
            }
            let begun = record
            let finished: (record: RequestRecord, reusable: Bool)? = await withCheckedContinuation { continuation in
                connection.channel.eventLoop.execute {
                    guard connection.channel.isActive else { return continuation.resume(returning: nil) }
                    let exchange = Exchange(record: begun, streaming: request.streaming, clock: self.now) { continuation.resume(returning: $0) }
                    connection.exchange.begin(exchange, on: connection.channel, timeout: self.timeout)
                    self.write(request, on: connection.channel)
                }
            }
            guard let finished else {
                guard retry.shouldRetry(after: .beforeRequestWritten) else {
                    record.finished = now()
                    record.outcome = .connectionFailed("connection closed before an answer")
                    return record
                }
                continue
            }
            if finished.reusable, connection.channel.isActive {
                idle.withLockedValue { $0.append(Connection(channel: connection.channel, exchange: connection.exchange, idleSince: .now())) }
            } else {
                connection.channel.close(promise: nil)
            }
            return finished.record
        }
    }

    /// Closes the idle connections.
    public func close() {
        for connection in idle.withLockedValue({ pool in defer { pool = [] }; return pool }) {
            connection.channel.close(promise: nil)
        }
    }

    private func write(_ request: LoadRequest, on channel: any Channel) {
        var head = HTTPRequestHead(version: .http1_1, method: request.method, uri: request.path)
        head.headers.add(name: "host", value: "\(host):\(port)")
        if let body = request.body {
            if !request.headers.contains(where: { $0.0.lowercased() == "content-type" }) {
                head.headers.add(name: "content-type", value: "application/json")
            }
            head.headers.add(name: "content-length", value: String(body.readableBytes))
        }
        for (name, value) in request.headers { head.headers.add(name: name, value: value) }
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        if let body = request.body { channel.write(HTTPClientRequestPart.body(.byteBuffer(body)), promise: nil) }
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
    }

    private struct Connection: Sendable {
        let channel: any Channel
        let exchange: ExchangeHandler
        var idleSince = NIODeadline.now()
    }

    /// Longest a connection is kept idle: under the 5 s keep-alive of vLLM's server (uvicorn),
    /// so the client does not race the server closing it.
    static let maxIdle = TimeAmount.seconds(4)

    private func takeConnection(fresh: Bool) async throws -> Connection {
        while !fresh, let reused = idle.withLockedValue({ $0.popLast() }) {
            if reused.channel.isActive, NIODeadline.now() - reused.idleSince < Self.maxIdle { return reused }
            reused.channel.close(promise: nil)
        }
        // Made here, not looked up in the pipeline afterwards: a server may close the
        // connection at once (over its connection limit), pipeline and all.
        let exchange = ExchangeHandler()
        let channel = try await ClientBootstrap(group: group)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(min(.seconds(5), timeout))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(exchange)
                }
            }
            .connect(to: try SocketAddress.makeAddressResolvingHost(host, port: port)).get()
        return Connection(channel: channel, exchange: exchange)
    }

    private static func describe(_ error: any Error) -> String {
        if let error = error as? IOError, error.errnoCode == ECONNREFUSED { return "connection refused" }
        if case .connectTimeout? = error as? ChannelError { return "connect timeout" }
        return "\(error)"
    }
}

extension RequestRecord {
    /// Token counts from an OpenAI `usage` object.
    mutating func read(usage: JSONValue?) {
        inputTokens = usage?["prompt_tokens"]?.int
        outputTokens = usage?["completion_tokens"]?.int
    }
}

/// One request in flight on a connection: its record so far and how its answer is read.
struct Exchange {
    var record: RequestRecord
    var streaming: Bool
    let clock: @Sendable () -> Double
    let done: (_ finished: (record: RequestRecord, reusable: Bool)) -> Void
    var status = 0
    var keepAlive = true
    var events = ServerSentEvents()
    var body: ByteBuffer?
    var sawDone = false
    var streamError: Int?
    var lastToken: Double?
}

/// Reads one answer at a time off a connection and fills in its exchange's record.
final class ExchangeHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPClientResponsePart
    /// Only touched on the channel's event loop.
    private var current: Exchange?
    private var deadline: Scheduled<Void>?

    func begin(_ exchange: Exchange, on channel: any Channel, timeout: TimeAmount) {
        current = exchange
        deadline = channel.eventLoop.scheduleTask(in: timeout) { [self] in
            fail(.timedOut)
            channel.close(promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard var exchange = current else { return }
        current = nil  // so the buffers below are not shared, and not copied on every chunk
        switch unwrapInboundIn(data) {
        case .head(let head):
            exchange.record.head = exchange.clock()
            exchange.status = Int(head.status.code)
            exchange.keepAlive = head.isKeepAlive
            exchange.record.servedBy = head.headers.first(name: "x-gateway-destination-endpoint-served")
            exchange.record.attempts = head.headers.first(name: "x-envoy-attempt-count").flatMap { Int($0) }
            // A server may answer a request for a stream with a whole body (an error, or a route
            // that does not stream): it is read as one.
            if exchange.streaming, head.status.code != 100, head.headers.first(name: "content-type")?.hasPrefix("text/event-stream") != true {
                exchange.streaming = false
            }
        case .body(var chunk):
            if exchange.streaming, exchange.status == 200 {
                // Every event in the chunk arrived now, however long reading them takes.
                let arrival = exchange.clock()
                exchange.events.append(&chunk)
                while let event = exchange.events.next() { Self.read(event, arrivedAt: arrival, into: &exchange) }
            } else {
                exchange.body.setOrWriteBuffer(&chunk)
            }
        case .end:
            current = nil
            deadline?.cancel()
            finish(exchange, reusable: exchange.keepAlive)
            return
        }
        current = exchange
    }

    /// One event of a stream: generated text, the usage chunk, an error, or the end — `[DONE]`,
    /// or `response.completed` in the Responses API's named events, where only
    /// `response.output_text.delta` carries text.
    private static func read(_ event: ServerSentEvents.Event, arrivedAt now: Double, into exchange: inout Exchange) {
        if let name = event.name {
            switch name {
            case "response.completed": exchange.sawDone = true
            case "response.output_text.delta": countToken(arrivedAt: now, into: &exchange)
            default: break
            }
            return
        }
        let event = event.data
        if event.readableBytesView.elementsEqual("[DONE]".utf8) { exchange.sawDone = true; return }
        if ServerSentEvents.containsKey(ServerSentEvents.errorKey, in: event) {
            // An error event that is not JSON still failed the stream: code 0 says "unknown".
            exchange.streamError = (try? JSONValue.parse(event))?["error"]?["code"]?.int ?? 0
            return
        }
        if ServerSentEvents.emptyChoices.contains(where: { ServerSentEvents.offset(of: $0, in: event) != nil }) {
            // The usage chunk `stream_options.include_usage` asks for comes last, without choices.
            // A usage chunk that does not parse leaves the counts unknown, as none would.
            exchange.record.read(usage: (try? JSONValue.parse(event))?["usage"])
            return
        }
        countToken(arrivedAt: now, into: &exchange)
    }

    private static func countToken(arrivedAt now: Double, into exchange: inout Exchange) {
        if let last = exchange.lastToken {
            exchange.record.interTokenGaps.append(now - last)
        } else {
            exchange.record.firstToken = now
        }
        exchange.lastToken = now
    }

    private func finish(_ exchange: Exchange, reusable: Bool) {
        var exchange = exchange
        let now = exchange.clock()
        exchange.record.finished = now
        if !(200..<300).contains(exchange.status) {
            exchange.record.outcome = .status(exchange.status)
        } else if exchange.streaming {
            if let code = exchange.streamError {
                exchange.record.outcome = .streamError(code)
            } else {
                exchange.record.outcome = exchange.sawDone ? .ok : .truncated
            }
        } else {
            // A body that is not JSON leaves the counts unknown; the status already judged the answer.
            exchange.record.read(usage: exchange.body.flatMap { try? JSONValue.parse($0) }?["usage"])
            exchange.record.outcome = .ok
        }
        exchange.done((exchange.record, reusable))
    }

    /// The connection ended with the request unanswered or half answered.
    private func fail(_ outcome: Outcome) {
        guard var exchange = current else { return }
        current = nil
        deadline?.cancel()
        exchange.record.finished = exchange.clock()
        exchange.record.outcome = exchange.record.head == nil || outcome == .timedOut ? outcome : .truncated
        exchange.done((exchange.record, false))
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail(.connectionFailed("connection closed before an answer"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let reset = (error as? IOError)?.errnoCode == ECONNRESET
        fail(.connectionFailed(reset ? "connection reset before an answer" : "\(error)"))
        context.close(promise: nil)
    }
}

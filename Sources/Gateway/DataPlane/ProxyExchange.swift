import InferenceAPI
import NIOCore
import NIOHTTP1

/// One client request proxied to the pool, on its connection's event loop: it borrows an
/// upstream connection, relays the response as it arrives (SSE chunk by chunk), retries on
/// another endpoint while nothing has reached the client, and ends with a clear error
/// otherwise.
final class ProxyExchange: InFlightResponse, UpstreamResponseHandler {
    /// What the exchange was routed with.
    struct Route {
        var clientModel: String?
        var targetModel: String?
        var priority: Int
        /// Fallbacks after the first endpoint; retries past them ask the picker again.
        var endpoints: [Endpoint]
        /// The inference request, for asking the picker again; nil for pass-through requests.
        var inference: InferenceRequest?
        var subset: Set<String>?
    }

    private enum Phase {
        /// Connecting or waiting for the response head: nothing has reached the client.
        case awaitingHead
        /// Relaying the body as it arrives.
        case relaying(eventStream: Bool)
        /// Collecting a non-streamed body to rewrite its model name before sending it.
        case collecting(HTTPResponseHead)
        case done
    }

    private let context: GatewayContext
    private let writer: ResponseWriter
    private var head: HTTPRequestHead
    private let body: ByteBuffer
    private var route: Route
    private let started = NIODeadline.now()
    private var phase = Phase.awaitingHead
    private var tried: Set<String> = []
    private var attempts = 0
    private var endpoint: Endpoint?
    private var connection: UpstreamConnection?
    private var retriedFreshConnection = false
    private var connectionWasReused = false
    private var rewriter: ModelNameRewriter?
    private var collected: ByteBuffer?
    private var status = 0
    private var responseBytes = 0
    private var usage = UsageScanner()
    private var lastActivity = NIODeadline.now()
    private var timeout: Scheduled<Void>?

    var isDone: Bool { if case .done = phase { true } else { false } }

    init(context: GatewayContext, writer: ResponseWriter, head: HTTPRequestHead, body: ByteBuffer, route: Route) {
        self.context = context
        self.writer = writer
        self.head = head
        self.body = body
        self.route = route
        if let target = route.targetModel, let client = route.clientModel, target != client {
            rewriter = ModelNameRewriter(target: target, client: client)
        }
    }

    func start() {
        context.picker.metrics.requestStarted(route.clientModel, route.targetModel, priority: route.priority, requestBytes: body.readableBytes)
        attemptNext()
    }

    // MARK: Attempts

    private func attemptNext() {
        guard attempts < context.configuration.maxAttempts, let next = nextEndpoint() else {
            return finishBeforeHead(APIError(
                status: 503, type: "ServiceUnavailable",
                message: "upstream connect error or disconnect/reset before headers: no endpoint answered after \(attempts) attempt(s)"))
        }
        attempts += 1
        tried.insert(next.address)
        connect(to: next, fresh: false)
    }

    /// The picker's fallbacks first, then a new decision without the endpoints already tried.
    private func nextEndpoint() -> Endpoint? {
        while !route.endpoints.isEmpty {
            let candidate = route.endpoints.removeFirst()
            if !tried.contains(candidate.address) { return candidate }
        }
        guard let inference = route.inference else { return context.picker.pickAny(excluding: tried) }
        if case .route(let endpoints, _, _, _) = context.picker.decide(inference, subset: route.subset, excluding: tried) {
            route.endpoints = Array(endpoints.dropFirst())
            return endpoints.first
        }
        return nil
    }

    private func connect(to target: Endpoint, fresh: Bool) {
        endpoint = target
        context.pool.acquire(target.address, fresh: fresh) { [self] result in
            switch result {
            case .success(let upstream):
                guard !isDone else { return context.pool.release(upstream) }
                connection = upstream
                connectionWasReused = upstream.reused
                retriedFreshConnection = retriedFreshConnection || fresh
                head.headers.replaceOrAdd(name: "x-gateway-destination-endpoint", value: target.address)
                lastActivity = .now()
                armTimeout()
                upstream.send(head, body: body, to: self)
            case .failure:
                guard !isDone else { return }
                context.picker.reportConnectFailure(target.address)
                attemptNext()
            }
        }
    }

    // MARK: Upstream events

    func upstreamHead(_ upstreamHead: HTTPResponseHead) {
        guard case .awaitingHead = phase else { return }
        lastActivity = .now()
        status = Int(upstreamHead.status.code)
        let eventStream = upstreamHead.headers.first(name: "content-type")?.hasPrefix("text/event-stream") == true
        if rewriter != nil, !eventStream {
            phase = .collecting(upstreamHead)
            collected = ByteBuffer()
            return
        }
        let filter = rewriter == nil ? HeaderFilter.response : HeaderFilter.rewrittenResponse
        writer.writeHead(status: upstreamHead.status, headers: filter.apply(upstreamHead.headers, adding: servedHeaders))
        phase = .relaying(eventStream: eventStream)
    }

    func upstreamBody(_ buffer: ByteBuffer) {
        lastActivity = .now()
        responseBytes += buffer.readableBytes
        switch phase {
        case .relaying:
            usage.scan(buffer)
            if rewriter != nil {
                let rewritten = rewriter!.feed(buffer)
                if rewritten.readableBytes > 0 { writer.writeBody(rewritten, flush: false) }
            } else {
                writer.writeBody(buffer, flush: false)
            }
        case .collecting:
            var buffer = buffer
            collected?.writeBuffer(&buffer)
        case .awaitingHead, .done:
            break
        }
    }

    func upstreamReadComplete() {
        if case .relaying = phase { writer.flush() }
    }

    func upstreamEnd() {
        connection = nil
        switch phase {
        case .relaying:
            let tail = rewriter?.finish() ?? ByteBuffer()
            end(.success)
            writer.writeBodyAndEnd(tail)
        case .collecting(let upstreamHead):
            var body = rewriter!.feed(collected ?? ByteBuffer())
            var tail = rewriter!.finish()
            body.writeBuffer(&tail)
            usage.scan(body)
            let headers = HeaderFilter.rewrittenResponse.apply(
                upstreamHead.headers, adding: servedHeaders + [("content-length", String(body.readableBytes))])
            end(.success)
            writer.writeHead(status: upstreamHead.status, headers: headers)
            writer.writeBodyAndEnd(body)
        case .awaitingHead, .done:
            break
        }
    }

    func upstreamFailed() {
        connection = nil
        switch phase {
        case .awaitingHead, .collecting:
            // Nothing reached the client yet: try again. A kept-alive connection may simply have
            // been closed by the server as we reused it, so it gets one fresh try first.
            phase = .awaitingHead
            collected = nil
            if let endpoint, connectionWasReused, !retriedFreshConnection {
                return connect(to: endpoint, fresh: true)
            }
            if let endpoint { context.picker.reportConnectFailure(endpoint.address) }
            attemptNext()
        case .relaying(let eventStream):
            failAfterHead(eventStream: eventStream, APIError(
                status: 502, type: "BadGateway",
                message: "upstream \(endpoint?.address ?? "") closed the connection before the response ended"))
        case .done:
            break
        }
    }

    // MARK: Ending

    /// The client went away: drop the upstream connection, which aborts the request there.
    func cancel() {
        guard !isDone else { return }
        connection?.close()
        connection = nil
        end(.cancelled)
    }

    private func finishBeforeHead(_ error: APIError) {
        guard !isDone else { return }
        status = error.status
        end(.error(error.type))
        writer.respond(error, extraHeaders: servedHeaders)
    }

    /// A stream that cannot finish ends with an SSE error event (as vLLM reports an engine
    /// error mid-stream) and `[DONE]`; a body with a known length can only be cut off.
    private func failAfterHead(eventStream: Bool, _ error: APIError) {
        end(.error(error.type))
        if eventStream {
            var event = writer.allocator.buffer(capacity: 256)
            SSE.beginEvent(&event)
            error.write(to: &event)
            SSE.endEvent(&event)
            SSE.writeDone(&event)
            writer.writeBodyAndEnd(event)
        } else {
            writer.abort()
        }
    }

    private func end(_ outcome: GatewayMetrics.Outcome) {
        phase = .done
        timeout?.cancel()
        timeout = nil
        let seconds = Double((NIODeadline.now() - started).nanoseconds) / 1e9
        context.picker.metrics.requestFinished(
            route.clientModel, route.targetModel, outcome: outcome, status: status, seconds: seconds,
            responseBytes: responseBytes, usage: usage.usage)
    }

    // MARK: Timeout

    /// The upstream may stay silent at most `upstreamTimeout`, before its first byte or between
    /// two; checked lazily so a busy stream does not reschedule a timer per chunk.
    private func armTimeout() {
        timeout?.cancel()
        let limit = context.configuration.upstreamTimeout
        timeout = writer.eventLoop.assumeIsolated().scheduleTask(deadline: lastActivity + limit) { [weak self] in self?.checkTimeout() }
    }

    private func checkTimeout() {
        guard !isDone, connection != nil else { return }
        if NIODeadline.now() - lastActivity < context.configuration.upstreamTimeout { return armTimeout() }
        connection?.close()
        connection = nil
        switch phase {
        case .awaitingHead, .collecting:
            finishBeforeHead(APIError(status: 504, type: "GatewayTimeout", message: "upstream request timeout"))
        case .relaying(let eventStream):
            failAfterHead(eventStream: eventStream, APIError(status: 504, type: "GatewayTimeout", message: "upstream request timeout"))
        case .done:
            break
        }
    }

    // MARK: Headers

    /// `x-gateway-destination-endpoint-served`: the endpoint that served the response, the
    /// name the EPP protocol gives it.
    static let servedHeader = "x-gateway-destination-endpoint-served"

    /// The served-endpoint header, once an endpoint was tried.
    private var servedHeaders: [(String, String)] { endpoint.map { [(Self.servedHeader, $0.address)] } ?? [] }
}

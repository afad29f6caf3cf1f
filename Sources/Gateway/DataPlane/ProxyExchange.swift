import InferenceAPI
import NIOCore
import NIOHTTP1

/// One client request proxied to the pool, on its connection's event loop: it borrows an
/// upstream connection, relays the response as it arrives (SSE chunk by chunk), retries on
/// another endpoint while the upstream has sent nothing, and ends with a clear error otherwise.
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
        /// Connecting, or waiting for the response head: the upstream has sent nothing.
        case awaitingHead
        /// Relaying the body as it arrives. `framed` when the head carried a content-length
        /// (the body can then only be cut off, not extended with an error event).
        case relaying(eventStream: Bool, framed: Bool)
        /// Collecting a non-streamed body to rewrite its model name before sending it.
        case collecting(HTTPResponseHead)
        case done
    }

    /// A non-streamed body collected for rewriting may be at most this large (a completion's
    /// JSON is kilobytes; this only stops a runaway upstream from growing the gateway).
    static let maxCollectedBytes = 64 * 1024 * 1024

    private let context: GatewayContext
    private let writer: ResponseWriter
    private var head: HTTPRequestHead
    private let body: ByteBuffer
    private var route: Route
    private let started = NIODeadline.now()
    private var phase = Phase.awaitingHead
    private var tried: Set<String> = []
    /// Endpoints that already had their one fresh-connection retry.
    private var freshRetried: Set<String> = []
    private var attempts = 0
    /// How the last attempt failed, for the 503 when no endpoint answers.
    private var lastFailure: String?
    private var endpoint: Endpoint?
    /// The endpoint the request was last sent to (the served-endpoint header names it).
    private var sentTo: Endpoint?
    private var connection: UpstreamConnection?
    private var connectionWasReused = false
    private var rewriter: ModelNameRewriter?
    private var collected: ByteBuffer?
    /// Whether the last body bytes sent to the client ended an SSE event (`\n\n`).
    private var atEventBoundary = true
    private var status = 0
    private var responseBytes = 0
    private var usage = UsageScanner()
    private var lastActivity = NIODeadline.now()
    private var timeout: Scheduled<Void>?

    var isDone: Bool { if case .done = phase { true } else { false } }
    /// Pass-through requests (no inference body) are not GIE requests and stay out of its metrics.
    private var measured: Bool { route.inference != nil }

    init(context: GatewayContext, writer: ResponseWriter, head: HTTPRequestHead, body: ByteBuffer, route: Route) {
        self.context = context
        self.writer = writer
        self.head = head
        self.body = body
        self.route = route
        if let target = route.targetModel, let client = route.clientModel, target != client {
            rewriter = ModelNameRewriter(target: target, client: client)
        }
        // A retry asks the picker again: it must keep the target model already in the body.
        if let target = route.targetModel { self.route.inference?.modelRewriteHeader = target }
    }

    func start() {
        if measured {
            context.picker.metrics.requestStarted(route.clientModel, route.targetModel, priority: route.priority, requestBytes: body.readableBytes)
        }
        attemptNext()
    }

    // MARK: Attempts

    private func attemptNext() {
        guard attempts < context.configuration.maxAttempts, let next = nextEndpoint() else {
            return finishBeforeHead(APIError(
                status: 503, type: "ServiceUnavailable",
                message: "upstream connect error or disconnect/reset before headers: no endpoint answered after \(attempts) attempt(s)"
                    + (lastFailure.map { "; the last attempt: \($0)" } ?? "")))
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
        guard case .route(let endpoints, _, _, _) = context.picker.decide(inference, subset: route.subset, excluding: tried) else { return nil }
        let untried = endpoints.filter { !tried.contains($0.address) }
        route.endpoints = Array(untried.dropFirst())
        return untried.first
    }

    private func connect(to target: Endpoint, fresh: Bool) {
        endpoint = target
        context.pool.acquire(target.address, fresh: fresh) { [self] result in
            switch result {
            case .success(let upstream):
                guard !isDone else { return context.pool.release(upstream) }
                connection = upstream
                connectionWasReused = upstream.reused
                sentTo = target
                head.headers.replaceOrAdd(name: "x-gateway-destination-endpoint", value: target.address)
                lastActivity = .now()
                armTimeout()
                upstream.send(head, body: body, to: self)
            case .failure(let error):
                guard !isDone else { return }
                if OpenFileLimit.isExhaustion(error) {
                    // The gateway itself is out of descriptors: the endpoint is not at fault (it
                    // keeps its place among the candidates), and another would fare no better.
                    OpenFileLimit.noteShortage()
                    return finishBeforeHead(APIError(
                        status: 503, type: "ServiceUnavailable",
                        message: "upstream connect error or disconnect/reset before headers: the gateway ran out of open files "
                            + "(its limit is \(OpenFileLimit.current.soft), ulimit -n)"))
                }
                lastFailure = "connecting to \(target.address) failed: \(error)"
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
        if let endpoint { context.picker.reportAnswer(endpoint.address, status: status) }
        let eventStream = upstreamHead.headers.first(name: "content-type")?.hasPrefix("text/event-stream") == true
        if rewriter != nil, !eventStream {
            phase = .collecting(upstreamHead)
            collected = ByteBuffer()
            return
        }
        let framed = rewriter == nil && upstreamHead.headers.contains(name: "content-length")
        let filter = rewriter == nil ? HeaderFilter.response : HeaderFilter.rewrittenResponse
        writer.writeHead(status: upstreamHead.status, headers: filter.apply(upstreamHead.headers, adding: servedHeaders))
        phase = .relaying(eventStream: eventStream, framed: framed)
    }

    func upstreamBody(_ buffer: ByteBuffer) {
        lastActivity = .now()
        responseBytes += buffer.readableBytes
        switch phase {
        case .relaying:
            usage.scan(buffer)
            if rewriter != nil {
                send(rewriter!.feed(buffer))
            } else {
                send(buffer)
            }
        case .collecting:
            var buffer = buffer
            collected?.writeBuffer(&buffer)
            if (collected?.readableBytes ?? 0) > Self.maxCollectedBytes {
                connection?.close()
                connection = nil
                finishBeforeHead(APIError(status: 502, type: "BadGateway", message: "upstream response larger than \(Self.maxCollectedBytes) bytes"))
            }
        case .awaitingHead, .done:
            break
        }
    }

    /// Relays body bytes (flushed at the end of the read burst). A client that cannot take
    /// them as fast pauses reading from the upstream until it can.
    private func send(_ bytes: ByteBuffer) {
        guard bytes.readableBytes > 0 else { return }
        writer.writeBody(bytes, flush: false)
        atEventBoundary = bytes.getInteger(at: bytes.writerIndex - 2, as: UInt16.self) == 0x0A0A
        if !writer.isWritable {
            // Pause before flushing: the flush may drain the buffer and report the client
            // writable again at once, and only a resume after the pause restarts reading.
            connection?.pauseReading()
            writer.flush()
        }
    }

    func clientWritabilityChanged(_ writable: Bool) {
        if writable { connection?.resumeReading() }
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
            responseBytes = body.readableBytes
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
        case .awaitingHead:
            guard let endpoint else { return attemptNext() }
            // The request reached the pod, which closed without answering: as Envoy without a
            // retry policy, the client is told (a request that crashed its pod stays there).
            guard context.configuration.retryOnReset else {
                // A kept-alive connection may have been closed by the pod as it was reused (the
                // pool drops them at 4 s, below uvicorn's 5 s): that says nothing of the pod.
                if !connectionWasReused { context.picker.reportConnectFailure(endpoint.address) }
                return finishBeforeHead(APIError(
                    status: 503, type: "ServiceUnavailable",
                    message: "upstream connect error or disconnect/reset before headers. reset reason: connection termination (\(endpoint.address))"))
            }
            // retry_on reset: a kept-alive connection may simply have been closed by the server
            // as it was reused, so the endpoint gets one fresh try before the next one.
            if connectionWasReused, !freshRetried.contains(endpoint.address) {
                freshRetried.insert(endpoint.address)
                return connect(to: endpoint, fresh: true)
            }
            lastFailure = "\(endpoint.address) closed the connection before answering"
            context.picker.reportConnectFailure(endpoint.address)
            attemptNext()
        case .collecting:
            // The upstream answered and then failed: not retried (it may have done the work).
            finishBeforeHead(APIError(
                status: 502, type: "BadGateway", message: "upstream \(endpoint?.address ?? "") closed the connection before the response ended"))
        case .relaying(let eventStream, let framed):
            failAfterHead(eventStream: eventStream && !framed, APIError(
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
    /// error mid-stream) and `[DONE]`, after whatever was held back and on an event boundary;
    /// a body with a known length can only be cut off.
    private func failAfterHead(eventStream: Bool, _ error: APIError) {
        end(.error(error.type))
        guard eventStream else { return writer.abort() }
        var event = writer.allocator.buffer(capacity: 256)
        if var held = rewriter?.finish() {
            if held.readableBytes > 0 { atEventBoundary = false }
            event.writeBuffer(&held)
        }
        if !atEventBoundary { event.writeStaticString("\n\n") }
        SSE.beginEvent(&event)
        error.write(to: &event)
        SSE.endEvent(&event)
        SSE.writeDone(&event)
        writer.writeBodyAndEnd(event)
    }

    private func end(_ outcome: GatewayMetrics.Outcome) {
        phase = .done
        timeout?.cancel()
        timeout = nil
        guard measured else { return }
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
        let error = APIError(status: 504, type: "GatewayTimeout", message: "upstream request timeout")
        if case .awaitingHead = phase, let endpoint { context.picker.reportAnswer(endpoint.address, status: 504) }
        switch phase {
        case .awaitingHead, .collecting:
            finishBeforeHead(error)
        case .relaying(let eventStream, let framed):
            failAfterHead(eventStream: eventStream && !framed, error)
        case .done:
            break
        }
    }

    // MARK: Headers

    /// `x-gateway-destination-endpoint-served`: the endpoint that served the response, the
    /// name the EPP protocol gives it.
    static let servedHeader = "x-gateway-destination-endpoint-served"

    /// Envoy's count of upstream attempts for this request (its `x-envoy-attempt-count`, sent
    /// when a route sets `include_attempt_count_in_response`): above 1 the request was retried.
    static let attemptCountHeader = "x-envoy-attempt-count"

    /// The served-endpoint header, once the request was sent to an endpoint, and the attempts.
    private var servedHeaders: [(String, String)] {
        guard let sentTo else { return [] }
        return [(Self.servedHeader, sentTo.address), (Self.attemptCountHeader, String(attempts))]
    }
}

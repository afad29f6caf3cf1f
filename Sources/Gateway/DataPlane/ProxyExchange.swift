import InferenceAPI
import NIOCore
import NIOHTTP1

/// One client request proxied to the pool, on its connection's event loop: it borrows an
/// upstream connection, relays the response as it arrives (SSE chunk by chunk), retries on
/// another endpoint while the upstream has sent nothing, and ends with a clear error otherwise.
/// What to do when is `ProxyExchangeStateMachine`'s; this shell feeds it the connection's,
/// the client's and the timer's events and performs its actions.
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

    private typealias Machine = ProxyExchangeStateMachine

    private let context: GatewayContext
    private let writer: ResponseWriter
    private var head: HTTPRequestHead
    private let body: ByteBuffer
    private let route: Route
    private var machine: Machine
    private let started = NIODeadline.now()
    /// The connection the request is on; nil while connecting and once it ended.
    private var connection: UpstreamConnection?
    private var lastActivity = NIODeadline.now()
    private var timeout: Scheduled<Void>?

    var isDone: Bool { machine.isDone }
    /// Pass-through requests (no inference body) are not GIE requests and stay out of its metrics.
    private var measured: Bool { route.inference != nil }

    init(context: GatewayContext, writer: ResponseWriter, head: HTTPRequestHead, body: ByteBuffer, route: Route) {
        self.context = context
        self.writer = writer
        self.head = head
        self.body = body
        var route = route
        // A retry asks the picker again: it must keep the target model already in the body.
        if let target = route.targetModel { route.inference?.modelRewriteHeader = target }
        self.route = route
        var rewriter: ModelNameRewriter?
        if let target = route.targetModel, let client = route.clientModel, target != client {
            rewriter = ModelNameRewriter(target: target, client: client)
        }
        machine = Machine(
            endpoints: route.endpoints, rewriter: rewriter,
            configuration: Machine.Configuration(
                maxAttempts: context.configuration.maxAttempts, retryOnReset: context.configuration.retryOnReset,
                measured: route.inference != nil))
    }

    func start() {
        if measured {
            context.picker.metrics.requestStarted(route.clientModel, route.targetModel, priority: route.priority, requestBytes: body.readableBytes)
        }
        perform(machine.start())
    }

    // MARK: Events

    func upstreamHead(_ upstreamHead: HTTPResponseHead) {
        lastActivity = .now()
        perform(machine.upstreamHead(upstreamHead))
    }

    func upstreamBody(_ buffer: ByteBuffer) {
        lastActivity = .now()
        perform(machine.upstreamBody(buffer))
    }

    func upstreamReadComplete() {
        perform(machine.upstreamReadComplete())
    }

    func upstreamEnd() {
        // The connection went back to its pool (or closed) by itself.
        connection = nil
        perform(machine.upstreamEnd())
    }

    func upstreamFailed() {
        connection = nil
        perform(machine.upstreamFailed())
    }

    func clientWritabilityChanged(_ writable: Bool) {
        if writable { connection?.resumeReading() }
    }

    /// The client went away: drop the upstream connection, which aborts the request there.
    func cancel() {
        perform(machine.clientGone())
    }

    // MARK: Actions

    private func perform(_ action: Machine.Action) {
        switch action {
        case .wait:
            break
        case .pickEndpoints(let tried):
            perform(machine.endpointsPicked(pick(excluding: tried)))
        case .connect(let endpoint, let fresh):
            connect(to: endpoint, fresh: fresh)
        case .sendRequest(let endpoint):
            guard let connection else { return }
            head.headers.replaceOrAdd(name: "x-gateway-destination-endpoint", value: endpoint.address)
            lastActivity = .now()
            armTimeout()
            connection.send(head, body: body, to: self)
        case .releaseConnection:
            if let connection { context.pool.release(connection) }
            connection = nil
        case .writeHead(let status, let headers):
            writer.writeHead(status: status, headers: headers)
        case .writeBody(let bytes):
            writer.writeBody(bytes, flush: false)
            if !writer.isWritable {
                // Pause before flushing: the flush may drain the buffer and report the client
                // writable again at once, and only a resume after the pause restarts reading.
                connection?.pauseReading()
                writer.flush()
            }
        case .flush:
            writer.flush()
        case .report(.connectFailure(let address), let next):
            context.picker.reportConnectFailure(address)
            perform(next)
        case .report(.answer(let address, let status), let next):
            context.picker.reportAnswer(address, status: status)
            perform(next)
        case .finish(let ending, let closeConnection, let completion):
            finish(ending, closeConnection: closeConnection, completion: completion)
        }
    }

    /// The picker's endpoints for a retry: a new decision for an inference request, a random
    /// candidate for a pass-through one.
    private func pick(excluding tried: Set<String>) -> [Endpoint] {
        guard let inference = route.inference else { return context.picker.pickAny(excluding: tried).map { [$0] } ?? [] }
        guard case .route(let endpoints, _, _, _) = context.picker.decide(inference, subset: route.subset, excluding: tried) else { return [] }
        return endpoints
    }

    private func connect(to target: Endpoint, fresh: Bool) {
        context.pool.acquire(target.address, fresh: fresh) { [self] result in
            switch result {
            case .success(let upstream):
                connection = upstream
                perform(machine.connected(reused: upstream.reused))
            case .failure(let error):
                guard !isDone else { return }
                if OpenFileLimit.isExhaustion(error) {
                    OpenFileLimit.noteShortage()
                    perform(machine.connectFailed(.outOfFiles(limit: OpenFileLimit.current.soft)))
                } else {
                    perform(machine.connectFailed(.failed("\(error)")))
                }
            }
        }
    }

    private func finish(_ ending: Machine.Ending, closeConnection: Bool, completion: Machine.Completion?) {
        if closeConnection { connection?.close() }
        connection = nil
        timeout?.cancel()
        timeout = nil
        if let completion {
            let seconds = Double((NIODeadline.now() - started).nanoseconds) / 1e9
            context.picker.metrics.requestFinished(
                route.clientModel, route.targetModel, outcome: completion.outcome, status: completion.status, seconds: seconds,
                responseBytes: completion.responseBytes, usage: completion.usage)
        }
        switch ending {
        case .respond(let error, let served):
            writer.respond(error, extraHeaders: served?.headers ?? [])
        case .respondCollected(let status, let headers, let body):
            writer.writeHead(status: status, headers: headers)
            writer.writeBodyAndEnd(body)
        case .endBody(let bytes):
            writer.writeBodyAndEnd(bytes)
        case .abort:
            writer.abort()
        case .nothing:
            break
        }
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
        perform(machine.upstreamTimedOut())
    }

    // MARK: Headers

    /// `x-gateway-destination-endpoint-served`: the endpoint that served the response, the
    /// name the EPP protocol gives it.
    static let servedHeader = "x-gateway-destination-endpoint-served"

    /// Envoy's count of upstream attempts for this request (its `x-envoy-attempt-count`, sent
    /// when a route sets `include_attempt_count_in_response`): above 1 the request was retried.
    static let attemptCountHeader = "x-envoy-attempt-count"
}

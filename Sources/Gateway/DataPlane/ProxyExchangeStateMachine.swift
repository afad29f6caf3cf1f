import InferenceAPI
import NIOCore
import NIOHTTP1

/// One proxied request's life, pure (as AsyncHTTPClient's `HTTPRequestStateMachine`): the events
/// of its upstream attempts in, what its owner must do out — which endpoint to try, what the
/// client is sent, what the picker and GIE's metrics are told. `ProxyExchange` performs the
/// actions; tests drive the machine with no sockets and no clock.
///
/// Invariants: endpoints are tried as `EndpointSearch` says (each at most once, at most
/// `maxAttempts`, a reset before the response head retried only with `retryOnReset`); nothing
/// is retried once the upstream answered; the request ends exactly once, with one `.finish`.
struct ProxyExchangeStateMachine {
    struct Configuration: Equatable {
        /// Endpoints tried per request (`DataPlaneConfiguration.maxAttempts`).
        var maxAttempts: Int
        /// Retry a reset before the response head (`DataPlaneConfiguration.retryOnReset`).
        var retryOnReset: Bool
        /// Whether the request's end goes to GIE's metrics: pass-through requests (no inference
        /// body) are not GIE requests.
        var measured: Bool
        /// A non-streamed body collected for rewriting may be at most this large.
        var maxCollectedBytes = ProxyExchangeStateMachine.maxCollectedBytes
    }

    /// A completion's JSON is kilobytes; this only stops a runaway upstream from growing the gateway.
    static let maxCollectedBytes = 64 * 1024 * 1024

    /// How a connection could not be had.
    enum ConnectFailure: Equatable {
        /// The gateway itself is out of descriptors (its soft limit is `limit`): the endpoint is not
        /// at fault, and another would fare no better.
        case outOfFiles(limit: Int)
        case failed(String)
    }

    /// What the picker learns about an endpoint (connect failures and answers feed its outlier
    /// detection and its view of the pool).
    enum EndpointReport: Equatable {
        /// Unreachable, or it closed the connection before answering.
        case connectFailure(String)
        /// It answered with `status` (504: the gateway timed it out).
        case answer(String, status: Int)
    }

    /// The endpoint a request was last sent to and the attempts so far: the served-endpoint and
    /// attempt-count headers.
    struct Served: Equatable {
        var endpoint: String
        var attempts: Int

        var headers: [(String, String)] {
            [(ProxyExchange.servedHeader, endpoint), (ProxyExchange.attemptCountHeader, String(attempts))]
        }
    }

    /// What GIE's metrics record as the request ends.
    struct Completion: Equatable {
        var outcome: GatewayMetrics.Outcome
        var status: Int
        var responseBytes: Int
        var usage: UsageScanner.Usage?
    }

    /// What the client is sent as the request ends.
    enum Ending: Equatable {
        /// Nothing went to the client yet: a whole error response.
        case respond(APIError, served: Served?)
        /// A collected body, its model name rewritten: head and body at once.
        case respondCollected(HTTPResponseStatus, HTTPHeaders, body: ByteBuffer)
        /// The relayed body's last bytes (what the rewriter held back, or a stream's error event
        /// and `[DONE]`), then its end.
        case endBody(ByteBuffer)
        /// A body with a known length cannot be completed: the client's connection is cut.
        case abort
        /// The client is gone: nothing to send.
        case nothing
    }

    enum Action: Equatable {
        /// Nothing until the next event.
        case wait
        /// The fallbacks ran out: ask the picker for endpoints other than these, then call
        /// `endpointsPicked`.
        case pickEndpoints(excluding: Set<String>)
        /// Borrow a connection to `endpoint` (`fresh`: not a kept-alive one), then call `connected`
        /// or `connectFailed`.
        case connect(to: Endpoint, fresh: Bool)
        /// Send the request on the connection just borrowed, addressed to `endpoint`, and start
        /// timing the upstream's silence.
        case sendRequest(to: Endpoint)
        /// The connection arrived after the request ended: give it back to the pool.
        case releaseConnection
        /// Start relaying the response.
        case writeHead(HTTPResponseStatus, HTTPHeaders)
        /// Relay body bytes (flushed at the end of the read burst, or at once when the client is
        /// slower than the upstream: then pause reading from it).
        case writeBody(ByteBuffer)
        case flush
        /// Tell the picker, then do `then`.
        indirect case report(EndpointReport, then: Action)
        /// The request is over: drop the upstream connection if `closeConnection` (it carries a
        /// response nobody will read), stop timing, record `completion` (nil: not measured), end.
        case finish(Ending, closeConnection: Bool, completion: Completion?)
    }

    /// A response being relayed as it arrives.
    private struct Relay {
        var served: Served
        var status: Int
        var eventStream: Bool
        /// The head carried a content-length: the body can only be cut off, not extended with an
        /// error event.
        var framed: Bool
        var rewriter: ModelNameRewriter?
        /// Whether the last body bytes sent ended an SSE event (`\n\n`).
        var atEventBoundary = true
        var responseBytes = 0
        var usage = UsageScanner()
    }

    /// A non-streamed body collected to rewrite its model name before it is sent.
    private struct Collection {
        var head: HTTPResponseHead
        var served: Served
        var rewriter: ModelNameRewriter
        var buffer = ByteBuffer()
        var responseBytes = 0
    }

    private enum State {
        case initial(EndpointSearch)
        /// The picker is asked for endpoints.
        case choosing(EndpointSearch)
        /// A connection to the search's current endpoint is being borrowed.
        case connecting(EndpointSearch)
        /// The request is on its way; the upstream has sent nothing.
        case awaitingHead(EndpointSearch, connectionWasReused: Bool)
        case relaying(Relay)
        case collecting(Collection)
        case done
        /// Only while a payload is changed in place, so its buffers are not copied.
        case modifying
    }

    private var state: State
    private let configuration: Configuration
    /// Set when the client's model name differs from the target's: the response names the client's.
    private let rewriter: ModelNameRewriter?

    /// `endpoints`: the picker's choice, then its fallbacks.
    init(endpoints: [Endpoint], rewriter: ModelNameRewriter?, configuration: Configuration) {
        state = .initial(EndpointSearch(endpoints: endpoints, maxAttempts: configuration.maxAttempts, retryOnReset: configuration.retryOnReset))
        self.rewriter = rewriter
        self.configuration = configuration
    }

    var isDone: Bool { if case .done = state { true } else { false } }

    // MARK: Attempts

    mutating func start() -> Action {
        guard case .initial(var search) = state else { return .wait }
        return take(search.next(), search)
    }

    /// The picker's answer to `.pickEndpoints` (empty when it has none or refuses).
    mutating func endpointsPicked(_ endpoints: [Endpoint]) -> Action {
        guard case .choosing(var search) = state else { return .wait }
        return take(search.picked(endpoints), search)
    }

    /// A connection was borrowed (`reused`: it already carried a response).
    mutating func connected(reused: Bool) -> Action {
        guard case .connecting(var search) = state, let endpoint = search.current else { return .releaseConnection }
        search.sent()
        state = .awaitingHead(search, connectionWasReused: reused)
        return .sendRequest(to: endpoint)
    }

    mutating func connectFailed(_ failure: ConnectFailure) -> Action {
        guard case .connecting(var search) = state, let endpoint = search.current else { return .wait }
        switch failure {
        case .outOfFiles(let limit):
            return finishBeforeHead(APIError(
                status: 503, type: "ServiceUnavailable",
                message: "upstream connect error or disconnect/reset before headers: the gateway ran out of open files "
                    + "(its limit is \(limit), ulimit -n)"), served: search.served)
        case .failed(let description):
            let next = search.connectFailed(description)
            return .report(.connectFailure(endpoint.address), then: take(next, search))
        }
    }

    /// Acts on the search's next step.
    private mutating func take(_ step: EndpointSearch.Step, _ search: EndpointSearch) -> Action {
        switch step {
        case .attempt(let endpoint):
            state = .connecting(search)
            return .connect(to: endpoint, fresh: false)
        case .pick(let excluding):
            state = .choosing(search)
            return .pickEndpoints(excluding: excluding)
        case .exhausted:
            return noEndpointAnswered(search)
        }
    }

    private mutating func noEndpointAnswered(_ search: EndpointSearch) -> Action {
        finishBeforeHead(APIError(
            status: 503, type: "ServiceUnavailable",
            message: "upstream connect error or disconnect/reset before headers: no endpoint answered after \(search.attempts) attempt(s)"
                + (search.lastFailure.map { "; the last attempt: \($0)" } ?? "")), served: search.served)
    }

    // MARK: Upstream events

    mutating func upstreamHead(_ head: HTTPResponseHead) -> Action {
        guard case .awaitingHead(let search, _) = state, let endpoint = search.current else { return .wait }
        let status = Int(head.status.code)
        let report = EndpointReport.answer(endpoint.address, status: status)
        let served = Served(endpoint: endpoint.address, attempts: search.attempts)
        let eventStream = head.headers.first(name: "content-type")?.hasPrefix("text/event-stream") == true
        if let rewriter, !eventStream {
            state = .collecting(Collection(head: head, served: served, rewriter: rewriter))
            return .report(report, then: .wait)
        }
        let framed = rewriter == nil && head.headers.contains(name: "content-length")
        let filter = rewriter == nil ? HeaderFilter.response : HeaderFilter.rewrittenResponse
        state = .relaying(Relay(served: served, status: status, eventStream: eventStream, framed: framed, rewriter: rewriter))
        return .report(report, then: .writeHead(head.status, filter.apply(head.headers, adding: served.headers)))
    }

    mutating func upstreamBody(_ buffer: ByteBuffer) -> Action {
        switch state {
        case .relaying(var relay):
            state = .modifying
            relay.responseBytes += buffer.readableBytes
            relay.usage.scan(buffer)
            let bytes = relay.rewriter == nil ? buffer : relay.rewriter!.feed(buffer)
            guard bytes.readableBytes > 0 else {
                state = .relaying(relay)
                return .wait
            }
            relay.atEventBoundary = bytes.getInteger(at: bytes.writerIndex - 2, as: UInt16.self) == 0x0A0A
            state = .relaying(relay)
            return .writeBody(bytes)
        case .collecting(var collection):
            state = .modifying
            collection.responseBytes += buffer.readableBytes
            var buffer = buffer
            collection.buffer.writeBuffer(&buffer)
            guard collection.buffer.readableBytes <= configuration.maxCollectedBytes else {
                return finishBeforeHead(
                    APIError(status: 502, type: "BadGateway", message: "upstream response larger than \(configuration.maxCollectedBytes) bytes"),
                    served: collection.served, closeConnection: true, responseBytes: collection.responseBytes)
            }
            state = .collecting(collection)
            return .wait
        case .initial, .choosing, .connecting, .awaitingHead, .done, .modifying:
            return .wait
        }
    }

    /// The end of one read burst.
    func upstreamReadComplete() -> Action {
        if case .relaying = state { .flush } else { .wait }
    }

    mutating func upstreamEnd() -> Action {
        switch state {
        case .relaying(var relay):
            state = .done
            let tail = relay.rewriter?.finish() ?? ByteBuffer()
            return .finish(.endBody(tail), closeConnection: false, completion: completion(
                .success, status: relay.status, responseBytes: relay.responseBytes, usage: relay.usage.usage))
        case .collecting(var collection):
            state = .done
            var body = collection.rewriter.feed(collection.buffer)
            var tail = collection.rewriter.finish()
            body.writeBuffer(&tail)
            var usage = UsageScanner()
            usage.scan(body)
            let headers = HeaderFilter.rewrittenResponse.apply(
                collection.head.headers, adding: collection.served.headers + [("content-length", String(body.readableBytes))])
            return .finish(.respondCollected(collection.head.status, headers, body: body), closeConnection: false, completion: completion(
                .success, status: Int(collection.head.status.code), responseBytes: body.readableBytes, usage: usage.usage))
        case .initial, .choosing, .connecting, .awaitingHead, .done, .modifying:
            return .wait
        }
    }

    /// The connection closed or failed before the response ended.
    mutating func upstreamFailed() -> Action {
        switch state {
        case .awaitingHead(var search, let reused):
            guard let address = search.current?.address else { return .wait }
            switch search.resetBeforeHead(connectionWasReused: reused) {
            case .giveUp(let blameEndpoint):
                // The request reached the pod, which closed without answering: as Envoy without a
                // retry policy, the client is told (a request that crashed its pod stays there).
                // A kept-alive connection may have been closed by the pod as it was reused (the
                // pool drops them at 4 s, below uvicorn's 5 s): that says nothing of the pod.
                let finish = finishBeforeHead(APIError(
                    status: 503, type: "ServiceUnavailable",
                    message: "upstream connect error or disconnect/reset before headers. reset reason: connection termination (\(address))"),
                    served: search.served)
                return blameEndpoint ? .report(.connectFailure(address), then: finish) : finish
            case .retryFresh(let endpoint):
                state = .connecting(search)
                return .connect(to: endpoint, fresh: true)
            case .moveOn(let next):
                return .report(.connectFailure(address), then: take(next, search))
            }
        case .collecting(let collection):
            // The upstream answered and then failed: not retried (it may have done the work).
            return finishBeforeHead(
                APIError(status: 502, type: "BadGateway", message: "upstream \(collection.served.endpoint) closed the connection before the response ended"),
                served: collection.served, responseBytes: collection.responseBytes)
        case .relaying(let relay):
            return failAfterHead(relay, APIError(
                status: 502, type: "BadGateway", message: "upstream \(relay.served.endpoint) closed the connection before the response ended"),
                closeConnection: false)
        case .initial, .choosing, .connecting, .done, .modifying:
            return .wait
        }
    }

    /// The upstream was silent for the upstream timeout, before its first byte or between two.
    mutating func upstreamTimedOut() -> Action {
        let error = APIError(status: 504, type: "GatewayTimeout", message: "upstream request timeout")
        switch state {
        case .awaitingHead(let search, _):
            guard let endpoint = search.current else { return .wait }
            return .report(
                .answer(endpoint.address, status: 504),
                then: finishBeforeHead(error, served: search.served, closeConnection: true))
        case .collecting(let collection):
            return finishBeforeHead(error, served: collection.served, closeConnection: true, responseBytes: collection.responseBytes)
        case .relaying(let relay):
            return failAfterHead(relay, error, closeConnection: true)
        case .initial, .choosing, .connecting, .done, .modifying:
            return .wait
        }
    }

    // MARK: Ending

    /// The client went away: the upstream connection is dropped, which aborts the request there.
    mutating func clientGone() -> Action {
        let completion: Completion?
        switch state {
        case .done, .modifying:
            return .wait
        case .initial, .choosing, .connecting, .awaitingHead:
            completion = self.completion(.cancelled, status: 0, responseBytes: 0, usage: nil)
        case .relaying(let relay):
            completion = self.completion(.cancelled, status: relay.status, responseBytes: relay.responseBytes, usage: relay.usage.usage)
        case .collecting(let collection):
            completion = self.completion(
                .cancelled, status: Int(collection.head.status.code), responseBytes: collection.responseBytes, usage: nil)
        }
        state = .done
        return .finish(.nothing, closeConnection: true, completion: completion)
    }

    private mutating func finishBeforeHead(_ error: APIError, served: Served?, closeConnection: Bool = false, responseBytes: Int = 0) -> Action {
        state = .done
        return .finish(.respond(error, served: served), closeConnection: closeConnection, completion: completion(
            .error(error.type), status: error.status, responseBytes: responseBytes, usage: nil))
    }

    /// A stream that cannot finish ends with an SSE error event (as vLLM reports an engine
    /// error mid-stream) and `[DONE]`, after whatever was held back and on an event boundary;
    /// a body with a known length can only be cut off.
    private mutating func failAfterHead(_ relay: Relay, _ error: APIError, closeConnection: Bool) -> Action {
        state = .done
        var relay = relay
        let completion = completion(.error(error.type), status: relay.status, responseBytes: relay.responseBytes, usage: relay.usage.usage)
        guard relay.eventStream, !relay.framed else { return .finish(.abort, closeConnection: closeConnection, completion: completion) }
        var event = ByteBuffer()
        event.reserveCapacity(256)
        if var held = relay.rewriter?.finish() {
            if held.readableBytes > 0 { relay.atEventBoundary = false }
            event.writeBuffer(&held)
        }
        if !relay.atEventBoundary { event.writeStaticString("\n\n") }
        SSE.beginEvent(&event)
        error.write(to: &event)
        SSE.endEvent(&event)
        SSE.writeDone(&event)
        return .finish(.endBody(event), closeConnection: closeConnection, completion: completion)
    }

    private func completion(_ outcome: GatewayMetrics.Outcome, status: Int, responseBytes: Int, usage: UsageScanner.Usage?) -> Completion? {
        guard configuration.measured else { return nil }
        return Completion(outcome: outcome, status: status, responseBytes: responseBytes, usage: usage)
    }
}

extension EndpointSearch {
    /// The served-endpoint and attempt-count headers, once the request was sent somewhere.
    var served: ProxyExchangeStateMachine.Served? { sentTo.map { .init(endpoint: $0, attempts: attempts) } }
}

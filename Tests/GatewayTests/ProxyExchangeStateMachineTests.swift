@testable import Gateway
import InferenceAPI
import NIOCore
import NIOHTTP1
import Testing

/// The proxy's exchange driven event by event, with no sockets: what a client, the picker and
/// GIE's metrics see for each way an upstream can answer or fail.
@Suite struct ProxyExchangeStateMachineTests {
    typealias Machine = ProxyExchangeStateMachine

    let a = Endpoint(address: "10.0.0.1:8000", podName: "pod-a")
    let b = Endpoint(address: "10.0.0.2:8000", podName: "pod-b")
    let c = Endpoint(address: "10.0.0.3:8000", podName: "pod-c")

    /// `#expect(action == expected)` for an action a mutating event returned (the macro cannot
    /// call a mutating method inside its expression).
    func expect(_ action: Machine.Action, _ expected: Machine.Action, _ comment: Comment? = nil, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(action == expected, comment, sourceLocation: sourceLocation)
    }

    func machine(
        _ endpoints: [Endpoint], maxAttempts: Int = 3, retryOnReset: Bool = false, measured: Bool = true,
        rewriter: ModelNameRewriter? = nil, maxCollectedBytes: Int = Machine.maxCollectedBytes
    ) -> Machine {
        Machine(
            endpoints: endpoints, rewriter: rewriter,
            configuration: Machine.Configuration(
                maxAttempts: maxAttempts, retryOnReset: retryOnReset, measured: measured, maxCollectedBytes: maxCollectedBytes))
    }

    func head(_ status: HTTPResponseStatus = .ok, _ headers: [(String, String)]) -> HTTPResponseHead {
        HTTPResponseHead(version: .http1_1, status: status, headers: HTTPHeaders(headers))
    }

    static let eventStream = [("content-type", "text/event-stream")]

    func served(_ endpoint: Endpoint, attempts: Int) -> Machine.Served { Machine.Served(endpoint: endpoint.address, attempts: attempts) }

    /// A machine whose request is on its way to `endpoint`, first attempt.
    func sentTo(_ endpoint: Endpoint, reused: Bool = false, retryOnReset: Bool = false, rewriter: ModelNameRewriter? = nil,
                maxCollectedBytes: Int = Machine.maxCollectedBytes) -> Machine {
        var machine = machine([endpoint], retryOnReset: retryOnReset, rewriter: rewriter, maxCollectedBytes: maxCollectedBytes)
        expect(machine.start(), .connect(to: endpoint, fresh: false))
        expect(machine.connected(reused: reused), .sendRequest(to: endpoint))
        return machine
    }

    /// A machine relaying an SSE stream from `a` that has sent `sent`.
    func streaming(_ sent: String, framed: Bool = false) -> Machine {
        var machine = sentTo(a)
        let headers = framed ? [("content-type", "text/event-stream"), ("content-length", "1000")] : Self.eventStream
        guard case .report(.answer(a.address, status: 200), then: .writeHead(.ok, _)) = machine.upstreamHead(head(.ok, headers)) else {
            Issue.record("the head was not relayed")
            return machine
        }
        expect(machine.upstreamBody(ByteBuffer(string: sent)), .writeBody(ByteBuffer(string: sent)))
        return machine
    }

    // MARK: Retries

    @Test func aConnectFailureMovesOnToTheNextEndpointAndTheAnswerNamesItAndTheAttempts() {
        var machine = machine([a, b])
        expect(machine.start(), .connect(to: a, fresh: false))
        expect(machine.connectFailed(.failed("connection refused")), .report(.connectFailure(a.address), then: .connect(to: b, fresh: false)))
        expect(machine.connected(reused: false), .sendRequest(to: b))

        let headers = [("content-type", "application/json"), ("content-length", "2"), ("connection", "keep-alive")]
        var expected = HTTPHeaders([("content-type", "application/json"), ("content-length", "2")])
        expected.add(name: ProxyExchange.servedHeader, value: b.address)
        expected.add(name: ProxyExchange.attemptCountHeader, value: "2")
        expect(machine.upstreamHead(head(.ok, headers)), .report(.answer(b.address, status: 200), then: .writeHead(.ok, expected)))
        expect(machine.upstreamBody(ByteBuffer(string: "{}")), .writeBody(ByteBuffer(string: "{}")))
        expect(machine.upstreamReadComplete(), .flush)
        expect(machine.upstreamEnd(), .finish(
            .endBody(ByteBuffer()), closeConnection: false,
            completion: Machine.Completion(outcome: .success, status: 200, responseBytes: 2, usage: nil)))
        #expect(machine.isDone)
    }

    @Test func whenTheFallbacksRunOutThePickerIsAskedForEndpointsNotYetTried() {
        var machine = machine([a])
        _ = machine.start()
        expect(machine.connectFailed(.failed("refused")), .report(.connectFailure(a.address), then: .pickEndpoints(excluding: [a.address])))
        // The picker's answer may still name the endpoint that failed: it is skipped, and the
        // rest become the fallbacks.
        expect(machine.endpointsPicked([a, b, c]), .connect(to: b, fresh: false))
        expect(machine.connectFailed(.failed("refused")), .report(.connectFailure(b.address), then: .connect(to: c, fresh: false)))
    }

    @Test func aResetOnAReusedConnectionGetsOneFreshConnectionPerEndpointThenTheNextEndpoint() {
        var machine = machine([a, b], retryOnReset: true)
        _ = machine.start()
        expect(machine.connected(reused: true), .sendRequest(to: a))
        expect(machine.upstreamFailed(), .connect(to: a, fresh: true))
        expect(machine.connected(reused: false), .sendRequest(to: a))
        // The fresh connection is reset too: the endpoint is at fault, and the next one is tried.
        expect(machine.upstreamFailed(), .report(.connectFailure(a.address), then: .connect(to: b, fresh: false)))
        // The next endpoint gets its own fresh retry.
        expect(machine.connected(reused: true), .sendRequest(to: b))
        expect(machine.upstreamFailed(), .connect(to: b, fresh: true))
        expect(machine.connected(reused: true), .sendRequest(to: b))
        expect(machine.upstreamFailed(), .report(.connectFailure(b.address), then: .pickEndpoints(excluding: [a.address, b.address])))
        expect(machine.endpointsPicked([]), .finish(
            .respond(
                APIError(
                    status: 503, type: "ServiceUnavailable",
                    message: "upstream connect error or disconnect/reset before headers: no endpoint answered after 2 attempt(s); "
                        + "the last attempt: \(b.address) closed the connection before answering"),
                served: served(b, attempts: 2)),
            closeConnection: false, completion: Machine.Completion(outcome: .error("ServiceUnavailable"), status: 503, responseBytes: 0, usage: nil)))
    }

    @Test func aResetOnANewConnectionGoesStraightToTheNextEndpoint() {
        var machine = machine([a, b], retryOnReset: true)
        _ = machine.start()
        expect(machine.connected(reused: false), .sendRequest(to: a))
        expect(machine.upstreamFailed(), .report(.connectFailure(a.address), then: .connect(to: b, fresh: false)))
    }

    /// Envoy without a retry policy: the client is told of the reset; a kept-alive connection's
    /// reset does not count against the pod.
    @Test(arguments: [false, true])
    func withoutRetryOnResetAResetBeforeTheHeadIsA503NamingTheEndpoint(reused: Bool) {
        var machine = sentTo(a, reused: reused)
        let finish = Machine.Action.finish(
            .respond(
                APIError(
                    status: 503, type: "ServiceUnavailable",
                    message: "upstream connect error or disconnect/reset before headers. reset reason: connection termination (\(a.address))"),
                served: served(a, attempts: 1)),
            closeConnection: false, completion: Machine.Completion(outcome: .error("ServiceUnavailable"), status: 503, responseBytes: 0, usage: nil))
        expect(machine.upstreamFailed(), (reused ? finish : .report(.connectFailure(a.address), then: finish)))
    }

    @Test func maxAttemptsEndsTheSearchWithTheLastFailureAndNoServedHeader() {
        var machine = machine([a, b, c], maxAttempts: 2)
        _ = machine.start()
        _ = machine.connectFailed(.failed("connection refused"))
        let error = APIError(
            status: 503, type: "ServiceUnavailable",
            message: "upstream connect error or disconnect/reset before headers: no endpoint answered after 2 attempt(s); "
                + "the last attempt: connecting to \(b.address) failed: connection refused")
        expect(machine.connectFailed(.failed("connection refused")), .report(
            .connectFailure(b.address),
            then: .finish(
                .respond(error, served: nil), closeConnection: false,
                completion: Machine.Completion(outcome: .error("ServiceUnavailable"), status: 503, responseBytes: 0, usage: nil))))
        #expect(machine.isDone)
        expect(machine.connectFailed(.failed("late")), .wait)
    }

    @Test func aGatewayOutOfFilesBlamesNoEndpointAndTriesNoOther() {
        var machine = machine([a, b])
        _ = machine.start()
        expect(machine.connectFailed(.outOfFiles(limit: 1024)), .finish(
            .respond(
                APIError(
                    status: 503, type: "ServiceUnavailable",
                    message: "upstream connect error or disconnect/reset before headers: the gateway ran out of open files (its limit is 1024, ulimit -n)"),
                served: nil),
            closeConnection: false, completion: Machine.Completion(outcome: .error("ServiceUnavailable"), status: 503, responseBytes: 0, usage: nil)))
    }

    // MARK: After the head

    @Test func aStreamThatBreaksAfterItsHeadIsNotRetriedAndEndsWithAnErrorEventOnAnEventBoundary() {
        var machine = streaming(#"data: {"text":"a","usage":{"prompt_tokens":3,"completion_tokens":1}}"# + "\n\ndata: {\"tex")
        // The cut event is closed first, so the error is an event of its own.
        let expected = "\n\n"
            + #"data: {"error":{"message":"upstream \#(a.address) closed the connection before the response ended","type":"BadGateway","param":null,"code":502}}"#
            + "\n\ndata: [DONE]\n\n"
        expect(machine.upstreamFailed(), .finish(
            .endBody(ByteBuffer(string: expected)), closeConnection: false,
            completion: Machine.Completion(
                outcome: .error("BadGateway"), status: 200, responseBytes: 81,
                usage: UsageScanner.Usage(promptTokens: 3, completionTokens: 1, cachedTokens: nil))))
    }

    @Test func aBodyWithAKnownLengthThatBreaksIsCutOff() {
        var machine = streaming("data: {}\n\n", framed: true)
        expect(machine.upstreamFailed(), .finish(
            .abort, closeConnection: false, completion: Machine.Completion(outcome: .error("BadGateway"), status: 200, responseBytes: 10, usage: nil)))
    }

    @Test func aStreamWhoseRewriterHeldBytesBackEndsThemBeforeTheErrorEvent() {
        var machine = sentTo(a, rewriter: ModelNameRewriter(target: "llama-v2", client: "assistant"))
        _ = machine.upstreamHead(head(.ok, Self.eventStream))
        // `"model":"lla` could begin the target's name: it is held back.
        expect(machine.upstreamBody(ByteBuffer(string: #"data: {"model":"lla"#)), .writeBody(ByteBuffer(string: "data: {")))
        guard case .finish(.endBody(let bytes), _, _) = machine.upstreamFailed() else {
            Issue.record("the stream did not end with an event")
            return
        }
        #expect(String(buffer: bytes).hasPrefix(#""model":"lla"# + "\n\ndata: {\"error\""))
    }

    @Test func theTimeoutBeforeTheHeadIsA504ThatCountsAgainstTheEndpoint() {
        var machine = sentTo(a)
        expect(machine.upstreamTimedOut(), .report(
            .answer(a.address, status: 504),
            then: .finish(
                .respond(APIError(status: 504, type: "GatewayTimeout", message: "upstream request timeout"), served: served(a, attempts: 1)),
                closeConnection: true, completion: Machine.Completion(outcome: .error("GatewayTimeout"), status: 504, responseBytes: 0, usage: nil))))
    }

    @Test func theTimeoutMidStreamEndsItWithA504ErrorEventAndDropsTheConnection() {
        var machine = streaming("data: {}\n\n")
        let event = #"data: {"error":{"message":"upstream request timeout","type":"GatewayTimeout","param":null,"code":504}}"# + "\n\ndata: [DONE]\n\n"
        expect(machine.upstreamTimedOut(), .finish(
            .endBody(ByteBuffer(string: event)), closeConnection: true,
            completion: Machine.Completion(outcome: .error("GatewayTimeout"), status: 200, responseBytes: 10, usage: nil)))
        expect(machine.upstreamTimedOut(), .wait, "a request ends once")
    }

    @Test func aTimeoutWhileConnectingIsLeftToTheConnectTimeout() {
        var machine = machine([a])
        _ = machine.start()
        expect(machine.upstreamTimedOut(), .wait)
        #expect(!machine.isDone)
    }

    // MARK: Collected bodies

    @Test func aWholeBodyIsCollectedAndSentWithTheClientsModelNameAndItsNewLength() {
        var machine = sentTo(a, rewriter: ModelNameRewriter(target: "llama-v2", client: "assistant"))
        let upstream = [("content-type", "application/json"), ("content-length", "63")]
        expect(machine.upstreamHead(head(.ok, upstream)), .report(.answer(a.address, status: 200), then: .wait))
        expect(machine.upstreamBody(ByteBuffer(string: #"{"model":"llama-v2","usage":{"prompt_tokens":5,"#)), .wait)
        expect(machine.upstreamBody(ByteBuffer(string: #""completion_tokens":7}}"#)), .wait)
        expect(machine.upstreamReadComplete(), .wait, "nothing is sent before the end")
        let body = #"{"model":"assistant","usage":{"prompt_tokens":5,"completion_tokens":7}}"#
        var headers = HTTPHeaders([("content-type", "application/json")])
        headers.add(name: ProxyExchange.servedHeader, value: a.address)
        headers.add(name: ProxyExchange.attemptCountHeader, value: "1")
        headers.add(name: "content-length", value: String(body.utf8.count))
        expect(machine.upstreamEnd(), .finish(
            .respondCollected(.ok, headers, body: ByteBuffer(string: body)), closeConnection: false,
            completion: Machine.Completion(
                outcome: .success, status: 200, responseBytes: body.utf8.count,
                usage: UsageScanner.Usage(promptTokens: 5, completionTokens: 7, cachedTokens: nil))))
    }

    @Test func aCollectedBodyOverTheLimitIsA502AndTheUpstreamIsDropped() {
        var machine = sentTo(a, rewriter: ModelNameRewriter(target: "llama-v2", client: "assistant"), maxCollectedBytes: 8)
        _ = machine.upstreamHead(head(.ok, [("content-type", "application/json")]))
        expect(machine.upstreamBody(ByteBuffer(string: "12345")), .wait)
        expect(machine.upstreamBody(ByteBuffer(string: "67890")), .finish(
            .respond(APIError(status: 502, type: "BadGateway", message: "upstream response larger than 8 bytes"), served: served(a, attempts: 1)),
            closeConnection: true, completion: Machine.Completion(outcome: .error("BadGateway"), status: 502, responseBytes: 10, usage: nil)))
        expect(machine.upstreamEnd(), .wait)
    }

    @Test func aCollectedBodyCutOffIsA502AndNotRetried() {
        var machine = machine([a, b], retryOnReset: true, rewriter: ModelNameRewriter(target: "t", client: "c"))
        _ = machine.start()
        _ = machine.connected(reused: true)
        _ = machine.upstreamHead(head(.ok, [("content-type", "application/json")]))
        _ = machine.upstreamBody(ByteBuffer(string: "{"))
        expect(machine.upstreamFailed(), .finish(
            .respond(
                APIError(status: 502, type: "BadGateway", message: "upstream \(a.address) closed the connection before the response ended"),
                served: served(a, attempts: 1)),
            closeConnection: false, completion: Machine.Completion(outcome: .error("BadGateway"), status: 502, responseBytes: 1, usage: nil)))
    }

    // MARK: The client

    @Test func aClientGoneMidStreamDropsTheUpstreamAndIsRecordedAsCancelled() {
        var machine = streaming("data: {}\n\n")
        expect(machine.clientGone(), .finish(
            .nothing, closeConnection: true, completion: Machine.Completion(outcome: .cancelled, status: 200, responseBytes: 10, usage: nil)))
        expect(machine.upstreamBody(ByteBuffer(string: "data: {}\n\n")), .wait)
        expect(machine.upstreamFailed(), .wait)
        expect(machine.clientGone(), .wait)
    }

    @Test func aConnectionThatArrivesAfterTheClientWentGoesBackToThePool() {
        var machine = machine([a])
        _ = machine.start()
        expect(machine.clientGone(), .finish(
            .nothing, closeConnection: true, completion: Machine.Completion(outcome: .cancelled, status: 0, responseBytes: 0, usage: nil)))
        expect(machine.connected(reused: true), .releaseConnection)
    }

    @Test func passThroughRequestsStayOutOfTheMetrics() {
        var machine = machine([a], measured: false)
        _ = machine.start()
        _ = machine.connected(reused: false)
        _ = machine.upstreamHead(head(.notFound, [("content-length", "0")]))
        expect(machine.upstreamEnd(), .finish(.endBody(ByteBuffer()), closeConnection: false, completion: nil))
    }
}

import InferenceAPI
import NIOCore
import NIOHTTP1

/// How the data plane behaves, whatever the pool.
public struct DataPlaneConfiguration: Sendable {
    /// Request bodies above this get 413.
    public var maxBodyBytes = 16 * 1024 * 1024
    public var connectTimeout: TimeAmount = .seconds(5)
    /// The longest an upstream may stay silent, before its first byte or between two; then
    /// the client gets 504, or an SSE error event mid-stream.
    public var upstreamTimeout: TimeAmount = .seconds(300)
    /// Endpoints tried per request: a connection that cannot be opened moves on to the next
    /// (the request reached no pod), as does a reset before the response head with `retryOnReset`.
    public var maxAttempts = 3
    /// Retry a request whose upstream closed the connection before answering, on a fresh
    /// connection and then on another endpoint (Envoy's `retry_on: reset`). Off by default, as
    /// in GIE's Envoy configuration, which names no retry policy: the request may have reached
    /// the pod, and a request that crashes its pod would take the next one down too.
    public var retryOnReset = false
    /// Header, body and idle timeouts and head limits of the client listener (an edge Envoy's).
    public var connectionLimits = ConnectionLimits.gateway
    /// HTTPS on the client listener.
    public var tls: ServerTLS?
    /// Require `Authorization: Bearer KEY` on `/v1` routes, as `vllm serve --api-key` does
    /// (401 otherwise). The header is forwarded, so pods that share the key accept it too.
    public var apiKey: String?
    /// Client connections held open at once; beyond it a new one is closed as it is accepted
    /// (Envoy's listener connection limit). By default (nil) as many as keep the process clear of
    /// its open-file limit with two descriptors per connection (the client's and the upstream's).
    public var maxConnections: Int?
    /// Eject endpoints after consecutive 5xx, as Envoy's outlier detection (nil: off, as GIE's
    /// Envoy configuration has it).
    public var outlierDetection: OutlierDetection?

    public init() {}
}

/// What every exchange on one event loop shares.
struct GatewayContext {
    let picker: EndpointPicker
    let pool: UpstreamPool
    let configuration: DataPlaneConfiguration
}

/// The gateway's routes on one event loop: inference requests go through the endpoint picker,
/// everything else to a random candidate, as GIE does with a headers-only request.
final class GatewayRouter: HTTPRequestRouter {
    let context: GatewayContext
    var maxBodyBytes: Int { context.configuration.maxBodyBytes }

    init(context: GatewayContext) { self.context = context }

    /// Inference bodies are scanned as they arrive.
    func bodyReader(for head: HTTPRequestHead) -> (any RequestBodyReader)? {
        guard head.method == .POST, let shape = InferenceBody.Shape(path: Substring(head.uri)) else { return nil }
        return InferenceBody.Reader(InferenceBody.Reading(shape: shape, prefixLimit: context.picker.prefixTextLimit))
    }

    func route(_ request: IncomingRequest, writer: ResponseWriter) -> (any InFlightResponse)? {
        if let key = context.configuration.apiKey, request.path.hasPrefix("/v1"), request.method != .OPTIONS,
           !BearerToken.matches(request.headers, key) {
            let error = APIError(status: 401, type: "Unauthorized", message: "invalid or missing API key (Authorization: Bearer)")
            context.picker.noteRefusal(status: error.status, code: error.type, message: error.message, model: nil)
            writer.respond(error)
            return nil
        }
        let subset = request.headers.first(name: "x-gateway-destination-endpoint-subset").map {
            Set($0.split(separator: ",").map { String($0.filter { $0 != " " }) })
        }
        var route = ProxyExchange.Route(clientModel: nil, targetModel: nil, priority: 0, endpoints: [], inference: nil, subset: subset)
        var body = request.body
        let path = request.path
        if request.method == .POST, let shape = InferenceBody.Shape(path: path) {
            var reading: InferenceBody.Reading
            if let reader = request.bodyReader as? InferenceBody.Reader {
                reading = reader.reading
            } else {
                reading = InferenceBody.Reading(shape: shape, prefixLimit: context.picker.prefixTextLimit)
                reading.read(request.body)
            }
            let inference: InferenceRequest
            switch reading.finish(request.body, header: { request.headers.first(name: $0) }) {
            case .success(let parsed): inference = parsed
            case .failure(let unreadable):
                let error = APIError(status: 400, type: "BadRequest", message: "inference error: BadRequest - \(unreadable.message)")
                context.picker.metrics.requestRejected(nil, nil, code: error.type)
                context.picker.noteRefusal(status: error.status, code: error.type, message: error.message, model: nil)
                writer.respond(error)
                return nil
            }
            switch context.picker.decide(inference, subset: subset) {
            case .reject(let status, let code, let message):
                context.picker.metrics.requestRejected(inference.model, nil, code: code)
                writer.respond(APIError(status: status, type: code, message: "inference error: \(code) - \(message)"))
                return nil
            case .route(let endpoints, let targetModel, let clientModel, let priority):
                route = ProxyExchange.Route(
                    clientModel: clientModel, targetModel: targetModel, priority: priority, endpoints: endpoints, inference: inference,
                    subset: subset)
                if targetModel != clientModel, let rewritten = JSONSplice.replacingTopLevelString("model", with: targetModel, in: body) {
                    body = rewritten
                }
            }
        } else if let endpoint = context.picker.pickAny() {
            route.endpoints = [endpoint]
        } else {
            let error = APIError(
                status: 503, type: "ServiceUnavailable", message: "inference error: ServiceUnavailable - no healthy endpoints in pool \(context.picker.pool.name)")
            context.picker.noteRefusal(status: error.status, code: error.type, message: error.message, model: nil)
            writer.respond(error)
            return nil
        }
        let bodiless = (request.method == .GET || request.method == .HEAD) && body.readableBytes == 0
        let headers = HeaderFilter.request.apply(request.headers, adding: bodiless ? [] : [("content-length", String(body.readableBytes))])
        let head = HTTPRequestHead(version: .http1_1, method: request.method, uri: request.uri, headers: headers)
        let exchange = ProxyExchange(context: context, writer: writer, head: head, body: body, route: route)
        exchange.start()
        return exchange.isDone ? nil : exchange
    }
}

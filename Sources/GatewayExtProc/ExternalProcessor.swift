import EnvoyAPI
import Foundation
import Gateway
import GRPCCore
import NIOCore
import NIOFoundationCompat
import SwiftProtobuf

/// `envoy.service.ext_proc.v3.ExternalProcessor/Process` as GIE's endpoint picker serves it:
/// each stream is one HTTP request, run by `ExtProcExchange`; this only translates Envoy's
/// messages into its calls and its replies into Envoy's messages.
public final class ExternalProcessor: Envoy_Service_ExtProc_V3_ExternalProcessor.SimpleServiceProtocol, Sendable {
    private let picker: EndpointPicker
    private let maxBodyBytes: Int

    public init(picker: EndpointPicker, maxBodyBytes: Int) {
        self.picker = picker
        self.maxBodyBytes = maxBodyBytes
    }

    public func process(
        request: RPCAsyncSequence<Envoy_Service_ExtProc_V3_ProcessingRequest, any Error>,
        response: RPCWriter<Envoy_Service_ExtProc_V3_ProcessingResponse>, context: ServerContext
    ) async throws {
        // Chaos can take the picker away: the stream fails, and Envoy's failure_mode_allow decides.
        guard picker.isReachable else { throw RPCError(code: .unavailable, message: "endpoint picker unavailable") }
        var exchange = ExtProcExchange(picker: picker, maxBodyBytes: maxBodyBytes)
        defer { exchange.streamEnded() }
        for try await message in request {
            if let hint = message.metadataContext.subsetHint { exchange.subsetHint = hint }
            let replies: [ExtProcReply]
            switch message.request {
            case .requestHeaders(let headers):
                replies = exchange.requestHeaders(headers.headers.fields, endOfStream: headers.endOfStream)
            case .requestBody(let body):
                replies = exchange.requestBody(ByteBuffer(data: body.body), endOfStream: body.endOfStream || body.endOfStreamWithoutMessage)
            case .responseHeaders(let headers):
                replies = exchange.responseHeaders(
                    headers.headers.fields, endOfStream: headers.endOfStream, served: message.metadataContext.servedEndpoint)
            case .responseBody(let body):
                replies = exchange.responseBody(ByteBuffer(data: body.body), endOfStream: body.endOfStream || body.endOfStreamWithoutMessage)
            case .responseTrailers:
                replies = exchange.responseTrailers()
            case .requestTrailers, nil:
                replies = []
            }
            for reply in replies { try await response.write(Envoy_Service_ExtProc_V3_ProcessingResponse(reply)) }
            // The request is over (answered, or refused): the stream closes with OK at once.
            // Left open, Envoy resets it as the request ends, and past 200 resets in 30 s
            // SwiftNIO's HTTP/2 takes them for an attack and closes the connection with every
            // request on it.
            if exchange.isDone { return }
        }
    }
}

extension Envoy_Config_Core_V3_HeaderMap {
    /// Envoy fills `raw_value`; older versions `value`.
    var fields: [ExtProcHeader] {
        headers.map { ExtProcHeader($0.key, $0.rawValue.isEmpty ? $0.value : String(decoding: $0.rawValue, as: UTF8.self)) }
    }
}

extension Envoy_Config_Core_V3_Metadata {
    /// `envoy.lb.subset_hint` → `x-gateway-destination-endpoint-subset`: a list of `ip:port`.
    var subsetHint: [String]? {
        guard case .listValue(let list)? = filterMetadata["envoy.lb.subset_hint"]?.fields["x-gateway-destination-endpoint-subset"]?.kind
        else { return nil }
        return list.values.compactMap { if case .stringValue(let address)? = $0.kind { address } else { nil } }
    }

    /// `envoy.lb` → `x-gateway-destination-endpoint-served`.
    var servedEndpoint: String? {
        guard case .stringValue(let address)? = filterMetadata["envoy.lb"]?.fields["x-gateway-destination-endpoint-served"]?.kind
        else { return nil }
        return address
    }
}

extension Envoy_Service_ExtProc_V3_ProcessingResponse {
    init(_ reply: ExtProcReply) {
        self.init()
        switch reply {
        case .requestHeaders(let set, let destination):
            var common = Envoy_Service_ExtProc_V3_CommonResponse()
            common.clearRouteCache_p = true
            common.headerMutation.setHeaders = set.map(Envoy_Config_Core_V3_HeaderValueOption.init)
            var headers = Envoy_Service_ExtProc_V3_HeadersResponse()
            headers.response = common
            requestHeaders = headers
            dynamicMetadata = Google_Protobuf_Struct(fields: [
                "envoy.lb": Google_Protobuf_Value(structValue: Google_Protobuf_Struct(fields: [
                    "x-gateway-destination-endpoint": Google_Protobuf_Value(stringValue: destination),
                ])),
            ])
        case .requestBody(let piece, let endOfStream):
            requestBody = .streamed(piece, endOfStream: endOfStream)
        case .responseHeaders(let set):
            var headers = Envoy_Service_ExtProc_V3_HeadersResponse()
            headers.response.headerMutation.setHeaders = set.map(Envoy_Config_Core_V3_HeaderValueOption.init)
            responseHeaders = headers
        case .responseBody(let piece, let endOfStream):
            responseBody = .streamed(piece, endOfStream: endOfStream)
        case .responseTrailers:
            responseTrailers = Envoy_Service_ExtProc_V3_TrailersResponse()
        case .immediate(let status, let body):
            var immediate = Envoy_Service_ExtProc_V3_ImmediateResponse()
            immediate.status.code = Envoy_Type_V3_StatusCode(rawValue: status) ?? .UNRECOGNIZED(status)
            immediate.body = Data(body.utf8)
            immediateResponse = immediate
        }
    }
}

extension Envoy_Service_ExtProc_V3_BodyResponse {
    static func streamed(_ piece: ByteBuffer, endOfStream: Bool) -> Self {
        var streamed = Envoy_Service_ExtProc_V3_StreamedBodyResponse()
        streamed.body = Data(buffer: piece, byteTransferStrategy: .noCopy)
        streamed.endOfStream = endOfStream
        var body = Self()
        body.response.bodyMutation.streamedResponse = streamed
        return body
    }
}

extension Envoy_Config_Core_V3_HeaderValueOption {
    /// A header to set: its value in `raw_value`, as GIE sends it.
    init(_ header: ExtProcHeader) {
        self.init()
        self.header.key = header.name
        self.header.rawValue = Data(header.value.utf8)
    }
}

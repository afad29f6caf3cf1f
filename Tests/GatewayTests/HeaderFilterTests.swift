@testable import Gateway
import NIOHTTP1
import Testing

@Suite struct HeaderFilterTests {
    @Test func dropsHopByHopAndControlHeadersInAnyCase() {
        let headers = HTTPHeaders([
            ("Host", "gw"), ("Connection", "keep-alive"), ("X-Gateway-Inference-Objective", "batch"), ("TE", "trailers"),
            ("Content-Length", "9"), ("Content-Type", "application/json"), ("x-request-id", "r1"), ("Expect", "100-continue"),
        ])
        let forwarded = HeaderFilter.request.apply(headers, adding: [("content-length", "12")])
        #expect(forwarded.map { $0.name } == ["Host", "Content-Type", "x-request-id", "content-length"])
        #expect(forwarded["content-length"] == ["12"])
        #expect(HeaderFilter.response.apply(headers).contains(name: "content-length"))
        #expect(!HeaderFilter.rewrittenResponse.apply(headers).contains(name: "content-length"))
    }

    @Test func headersTheConnectionHeaderNamesAreDroppedButNotTheHost() {
        let headers = HTTPHeaders([
            ("Host", "gw"), ("Connection", "Keep-Alive, X-Hop, host"), ("x-hop", "1"), ("Proxy-Authorization", "Basic x"), ("x-kept", "2"),
        ])
        #expect(HeaderFilter.request.apply(headers).map { $0.name } == ["Host", "x-kept"])
    }
}

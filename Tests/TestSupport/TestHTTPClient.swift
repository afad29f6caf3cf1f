import AsyncHTTPClient
import NIOCore

extension HTTPClient {
    /// The client the tests send HTTP with: `HTTPClient.shared`, except that an idle kept-alive
    /// connection is let go after a second rather than ten minutes. Servers close idle
    /// connections on their own clock (vLLM's uvicorn after 5 s, as FakeVLLM does); a client
    /// that keeps them longer can send a request down a connection the server is closing and
    /// get a reset, and while the suite's CPU-bound tests hold both cores for seconds, a test
    /// pausing between requests loses that race. Never shut down, like `shared`.
    public static let forTests = HTTPClient(
        eventLoopGroupProvider: .singleton,
        configuration: HTTPClient.Configuration(
            timeout: HTTPClient.Configuration.Timeout(connect: .seconds(90), read: .seconds(90)),
            connectionPool: HTTPClient.Configuration.ConnectionPool(idleTimeout: .seconds(1))
        )
    )
}

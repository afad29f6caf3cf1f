import NIOCore

/// How long a client connection may take over each part of a request, and how large a request
/// head may be. Every listener has them, so that no client holds a connection (and a slot
/// under the open-file limit) by sending slowly or not at all.
public struct ConnectionLimits: Sendable, Equatable {
    /// From a request's first byte to the end of its head; then 408 and the connection is
    /// closed (Envoy's `request_headers_timeout`).
    public var requestHeadersTimeout: TimeAmount?
    /// From the end of a request's head to the end of its body; then 408 and the connection
    /// is closed (Envoy's `request_timeout` for a request still arriving).
    public var requestBodyTimeout: TimeAmount?
    /// How long a kept-alive connection may wait for the next request (uvicorn's
    /// `--timeout-keep-alive`, Envoy's `idle_timeout`); a new connection counts as idle too.
    public var idleTimeout: TimeAmount?
    /// Bytes of header names and values a request head may carry; above it, 431.
    public var maxHeaderBytes: Int
    /// Header lines a request head may carry; above it, 431.
    public var maxHeaderCount: Int

    public init(
        requestHeadersTimeout: TimeAmount?, requestBodyTimeout: TimeAmount?, idleTimeout: TimeAmount?, maxHeaderBytes: Int,
        maxHeaderCount: Int
    ) {
        self.requestHeadersTimeout = requestHeadersTimeout
        self.requestBodyTimeout = requestBodyTimeout
        self.idleTimeout = idleTimeout
        self.maxHeaderBytes = maxHeaderBytes
        self.maxHeaderCount = maxHeaderCount
    }

    /// An emulated vLLM pod: uvicorn's 5 s keep-alive (vLLM's `VLLM_HTTP_TIMEOUT_KEEP_ALIVE`).
    /// uvicorn has no header or body timeout; ours close a slow sender after 10 s for the
    /// head and 60 s for the body. Head limits as the gateway's (uvicorn's httptools parser
    /// sets none; SwiftNIO's parser stops at 80 KiB).
    public static let pod = ConnectionLimits(
        requestHeadersTimeout: .seconds(10), requestBodyTimeout: .seconds(60), idleTimeout: .seconds(5),
        maxHeaderBytes: 60 * 1024, maxHeaderCount: 100)

    /// The gateway, as Envoy's edge settings: a body within 300 s (`request_timeout`), idle
    /// connections kept one hour (`idle_timeout`), heads up to 60 KiB (`max_request_headers_kb`)
    /// and 100 headers (`max_headers_count`). Envoy sets no `request_headers_timeout` by
    /// default; ours is 10 s, so a slow sender cannot hold a connection.
    public static let gateway = ConnectionLimits(
        requestHeadersTimeout: .seconds(10), requestBodyTimeout: .seconds(300), idleTimeout: .seconds(3600),
        maxHeaderBytes: 60 * 1024, maxHeaderCount: 100)

    /// Admin, registry and metrics listeners: small requests from tools on this machine.
    public static let admin = ConnectionLimits(
        requestHeadersTimeout: .seconds(10), requestBodyTimeout: .seconds(10), idleTimeout: .seconds(60),
        maxHeaderBytes: 60 * 1024, maxHeaderCount: 100)

    /// These limits with the timeouts a command line gave, in seconds (0: none).
    public func overriding(
        idle: (seconds: Double, flag: String), requestHeaders: Double, requestBody: Double
    ) throws(ConnectionLimitsError) -> ConnectionLimits {
        var limits = self
        limits.idleTimeout = try Self.timeout(seconds: idle.seconds, name: idle.flag)
        limits.requestHeadersTimeout = try Self.timeout(seconds: requestHeaders, name: "--request-headers-timeout")
        limits.requestBodyTimeout = try Self.timeout(seconds: requestBody, name: "--request-body-timeout")
        return limits
    }

    /// A duration given in seconds on a command line or in a file, bounded so that converting
    /// it cannot trap: nil for 0 (no timeout), an error text for a negative, non-finite or
    /// longer-than-a-year value.
    public static func timeout(seconds: Double, name: String) throws(ConnectionLimitsError) -> TimeAmount? {
        guard seconds.isFinite, seconds >= 0, seconds <= 365 * 86400 else {
            throw ConnectionLimitsError("\(name) must be between 0 (none) and 31536000 seconds, got \(seconds)")
        }
        return seconds == 0 ? nil : .nanoseconds(Int64(seconds * 1e9))
    }
}

/// A timeout or limit given out of range.
public struct ConnectionLimitsError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

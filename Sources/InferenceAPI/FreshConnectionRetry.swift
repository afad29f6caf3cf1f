/// The one retry on a new connection that an HTTP/1.1 client owes a request when the connection
/// it used failed in a way that says nothing of the server: a kept-alive connection the server
/// closed just as it was reused (servers drop idle connections on their own schedule; uvicorn's
/// is 5 s), or a connection found closed before any of the request was written. A retry that
/// fails too is the answer, and once part of the response arrived the server took the request,
/// which must not run twice.
///
/// One per request (per endpoint, where a caller moves on to another):
/// ```swift
/// var retry = FreshConnectionRetry()
/// if retry.shouldRetry(after: .beforeResponse(connectionWasReused: connection.reused)) {
///     send(on: newConnection)  // retry.isSpent is now true
/// }
/// ```
public struct FreshConnectionRetry: Sendable, Equatable {
    /// How an attempt failed.
    public enum Failure: Sendable, Equatable {
        /// The connection was closed before any of the request was written: the server saw nothing.
        case beforeRequestWritten
        /// The request was (or may have been) written and no byte of the response came back. On a
        /// reused connection this is the keep-alive race; on a new one, the server's own doing.
        case beforeResponse(connectionWasReused: Bool)
        /// Part of the response arrived: the server is working on the request.
        case duringResponse
    }

    /// Whether the retry was taken: the attempt under way is on a fresh connection.
    public private(set) var isSpent = false

    /// A request's retry, not yet taken.
    public init() {}

    /// Whether to send the request again on a fresh connection after `failure`; a yes spends the
    /// retry, so a second failure is final.
    public mutating func shouldRetry(after failure: Failure) -> Bool {
        guard !isSpent else { return false }
        switch failure {
        case .beforeRequestWritten, .beforeResponse(connectionWasReused: true):
            isSpent = true
            return true
        case .beforeResponse(connectionWasReused: false), .duringResponse:
            return false
        }
    }
}

import InferenceAPI
import Testing

struct FreshConnectionRetryTests {
    typealias Failure = FreshConnectionRetry.Failure

    /// Whether a first failure is retried: only when the server cannot have seen the request, or
    /// the failure is a kept-alive connection's race with the server closing it.
    @Test(arguments: [
        (Failure.beforeRequestWritten, true),
        (.beforeResponse(connectionWasReused: true), true),
        (.beforeResponse(connectionWasReused: false), false),
        (.duringResponse, false),
    ])
    func aFirstFailureIsRetriedOnlyWhenItSaysNothingOfTheServer(failure: Failure, retried: Bool) {
        var retry = FreshConnectionRetry()
        let retriedNow = retry.shouldRetry(after: failure)
        #expect(retriedNow == retried)
        #expect(retry.isSpent == retried, "the next attempt is on a fresh connection exactly when it is a retry")
    }

    @Test(arguments: [Failure.beforeRequestWritten, .beforeResponse(connectionWasReused: true)])
    func theRetryIsTakenOnceAndTheFreshConnectionsFailureIsTheAnswer(failure: Failure) {
        var retry = FreshConnectionRetry()
        let first = retry.shouldRetry(after: failure)
        let second = retry.shouldRetry(after: failure)
        let third = retry.shouldRetry(after: .beforeRequestWritten)
        #expect(first && !second && !third)
        #expect(retry.isSpent)
    }

    @Test func aFailureNotRetriedLeavesTheRetryForALaterOne() {
        var retry = FreshConnectionRetry()
        let onANewConnection = retry.shouldRetry(after: .beforeResponse(connectionWasReused: false))
        #expect(!onANewConnection && !retry.isSpent)
        let beforeWriting = retry.shouldRetry(after: .beforeRequestWritten)
        #expect(beforeWriting)
    }
}

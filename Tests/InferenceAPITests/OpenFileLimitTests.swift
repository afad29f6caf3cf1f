#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import InferenceAPI
import NIOCore
import Testing

struct OpenFileLimitTests {
    @Test func theSoftLimitIsRaisedToTheHardLimitAndNeverLowered() throws {
        let (soft, hard) = OpenFileLimit.current
        try #require(hard > 64, "this machine's hard limit on open files is \(hard)")
        // Lower the soft limit a little (anything up to the hard limit is allowed without
        // privileges), as a shell's `ulimit -Sn` would, then raise it back.
        var lowered = rlimit()
        #if canImport(Glibc)
        let kind = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
        #else
        let kind = RLIMIT_NOFILE
        #endif
        getrlimit(kind, &lowered)
        lowered.rlim_cur = rlim_t(min(soft, hard - 1))
        try #require(setrlimit(kind, &lowered) == 0)
        #expect(OpenFileLimit.current.soft == min(soft, hard - 1))

        let raised = OpenFileLimit.raiseToHardLimit()
        #expect(raised == hard && OpenFileLimit.current == (soft: hard, hard: hard))
        #expect(OpenFileLimit.raiseToHardLimit() == hard, "at the hard limit it stays there")
    }

    @Test func aLimitBelowVLLMsTargetIsWarnedAbout() {
        #expect(OpenFileLimit.warning(soft: 65_535, podsInThisProcess: true) == nil)
        let inProcess = OpenFileLimit.warning(soft: 20_000, podsInThisProcess: true)
        #expect(inProcess?.contains("limited to 20000") == true && inProcess?.contains("about 6000 client connections") == true)
        #expect(inProcess?.contains("its pods share this process") == true)
        // Process pods hold their own descriptors: the gateway's two per connection go further.
        let processes = OpenFileLimit.warning(soft: 20_000, podsInThisProcess: false)
        #expect(processes?.contains("about 9000 client connections") == true && processes?.contains("share this process") == false)
    }

    @Test func runningOutIsToldApartFromAPeersFault() {
        #expect(OpenFileLimit.isExhaustion(IOError(errnoCode: EMFILE, reason: "socket")))
        #expect(OpenFileLimit.isExhaustion(IOError(errnoCode: ENFILE, reason: "accept")))
        #expect(!OpenFileLimit.isExhaustion(IOError(errnoCode: ECONNREFUSED, reason: "connect")))
        #expect(!OpenFileLimit.isExhaustion(ChannelError.connectTimeout(.seconds(1))))
    }
}

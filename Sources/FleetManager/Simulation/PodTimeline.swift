import FakeVLLM
import InferenceAPI

/// One pod of a virtual fleet as a timeline of its own: its driver, the requests the gateway
/// delivered and the engine has not yet been given, and what each of its clients has seen.
///
/// Between two moments the gateway looks at a pod (a scrape, a probe, a fault, a timeout), the
/// pod depends on nothing but the requests delivered to it: the picker decides from the last
/// scrape, and admission reads only the pod's configuration and faults. So a pod runs lazily,
/// catching up when it is looked at, and the fleet's pods catch up in parallel. Nothing here
/// touches another pod or the gateway: what the gateway must learn (a request finished or was
/// cut) is kept in `happenings` for the fleet to apply.
struct PodTimeline: Sendable {
    /// The pod's driver. The fleet changes it directly (faults, readiness, draining, accepted
    /// counts) only once the pod is caught up to now.
    var driver: VirtualPodDriver
    /// Requests delivered and not yet submitted, in delivery order (times never decrease).
    private var inbox: [(time: Double, request: EngineRequest)] = []
    private var inboxStart = 0
    /// What each request's client has seen, by the request's handle (its `RequestID`).
    private var clients: [Client] = []
    private var freeHandles: [Int] = []
    /// Finishes and cuts since the fleet last took them, in time order.
    private(set) var happenings: [Happening] = []
    /// Gaps between a stream's tokens since the fleet last took them (when wanted).
    private(set) var interTokenGaps: [Double] = []

    struct Client {
        /// The fleet's exchange.
        var slot: Int
        var streaming: Bool
        /// Chaos `errors kind: cut`: the stream is cut after this many token events.
        var cutAfterEvents: Int?
        var events = 0
        var firstToken: Double?
        /// When the client last saw something of a stream (its admission, then each token).
        var lastActivity: Double
        /// Ended: later progress (none is expected) is ignored.
        var ended = false
    }

    enum Happening {
        case finished(slot: Int, at: Double, firstToken: Double?)
        /// The connection was cut (chaos): a stream after some events, a whole response at its end.
        case cut(slot: Int, at: Double, streaming: Bool)
    }

    init(_ driver: VirtualPodDriver) {
        self.driver = driver
    }

    // MARK: The gateway's side (the pod is caught up to now)

    /// A request reaches the pod's engine at `time` (the pod may be behind: it is submitted when
    /// the pod catches up). Returns the handle the fleet aborts it by.
    mutating func deliver(
        slot: Int, time: Double, streaming: Bool, cutAfterEvents: Int?, makeRequest: (RequestID) -> EngineRequest
    ) -> Int {
        let client = Client(slot: slot, streaming: streaming, cutAfterEvents: cutAfterEvents, lastActivity: time)
        let handle: Int
        if let free = freeHandles.popLast() {
            handle = free
            clients[handle] = client
        } else {
            handle = clients.count
            clients.append(client)
        }
        inbox.append((time, makeRequest(RequestID(handle))))
        return handle
    }

    /// The pod's own checks on a request (PodCore's), for admission while the pod is behind.
    /// `mutating` only so that the fleet's array lends the timeline in place: a read would copy
    /// the pod out, engine and all, for each request.
    mutating func admissionCheck(model: String?, promptTokenIDs: [Int], maxTokens: Int) throws(APIError) -> (prompt: [Int], lora: LoRAAdapter?) {
        try driver.core.admitCompletion(model: model, promptTokenIDs: promptTokenIDs, maxTokens: maxTokens)
    }

    /// When the request's client last saw something of it.
    func lastActivity(_ handle: Int) -> Double { clients[handle].lastActivity }

    /// Ends a request the gateway gave up on (its client went away, the pod was cut off).
    mutating func abort(_ handle: Int, now: Double) {
        driver.abort(RequestID(handle), now: now)
        clients[handle].ended = true
    }

    /// Forgets a request whose exchange ended; its handle may be given again.
    mutating func release(_ handle: Int) {
        // A killed pod's timeline may have been replaced by its next launch's.
        guard handle < clients.count, clients[handle].slot >= 0 else { return }
        clients[handle].ended = true
        clients[handle].slot = -1
        freeHandles.append(handle)
    }

    /// Hands over what happened since the last call.
    mutating func takeHappenings() -> (happenings: [Happening], gaps: [Double]) {
        defer { (happenings, interTokenGaps) = ([], []) }
        return (happenings, interTokenGaps)
    }

    // MARK: Running

    /// Runs the pod to `time`: its events and deliveries up to then, in time order, a step's
    /// end before a delivery at the same time (as in the fleet's event order). Returns whether
    /// there is news for the fleet (`takeHappenings`). Cheap when nothing is due: the fleet
    /// calls it rather than read the pod's next time, which would copy the pod out of its array.
    @discardableResult
    mutating func run(until time: Double, wantsInterTokenGaps: Bool) -> Bool {
        while true {
            let delivered = inboxStart < inbox.count ? inbox[inboxStart].time : .infinity
            if let event = driver.nextEvent, event <= delivered, event <= time {
                advance(now: event, wantsInterTokenGaps: wantsInterTokenGaps)
            } else if delivered <= time {
                let request = inbox[inboxStart].request
                inboxStart += 1
                driver.submit(request, now: delivered)
            } else {
                break
            }
        }
        if inboxStart == inbox.count, inboxStart > 0 {
            inbox.removeAll(keepingCapacity: true)
            inboxStart = 0
        }
        return !happenings.isEmpty || !interTokenGaps.isEmpty
    }

    private mutating func advance(now: Double, wantsInterTokenGaps: Bool) {
        guard let outcome = driver.advance(now: now) else { return }
        for progress in outcome.progress where !progress.newTokens.isEmpty || progress.finishReason != nil {
            let handle = Int(progress.id)
            guard !clients[handle].ended else { continue }
            guard !progress.newTokens.isEmpty else {
                // Finished with no token (an engine that gave up on the prompt): answered empty.
                end(handle, .finished(slot: clients[handle].slot, at: now, firstToken: clients[handle].firstToken))
                continue
            }
            clients[handle].events += 1
            if clients[handle].streaming {
                clients[handle].lastActivity = now
                if let previous = progress.previousTokenTime {
                    if wantsInterTokenGaps { interTokenGaps.append(now - previous) }
                } else {
                    clients[handle].firstToken = now
                }
                if let cut = clients[handle].cutAfterEvents, clients[handle].events >= cut {
                    driver.abort(progress.id, now: now)
                    end(handle, .cut(slot: clients[handle].slot, at: now, streaming: true))
                    continue
                }
            } else if clients[handle].firstToken == nil {
                clients[handle].firstToken = now
            }
            guard progress.finishReason != nil else { continue }
            if clients[handle].cutAfterEvents != nil, !clients[handle].streaming {
                // A whole response cut before its first byte: reset before headers.
                end(handle, .cut(slot: clients[handle].slot, at: now, streaming: false))
                continue
            }
            end(handle, .finished(slot: clients[handle].slot, at: now, firstToken: clients[handle].firstToken))
        }
    }

    /// The request ended on the pod; its handle is freed when the fleet takes the news.
    private mutating func end(_ handle: Int, _ happening: Happening) {
        clients[handle].ended = true
        happenings.append(happening)
    }
}

/// A buffer handed to the threads of a fleet-wide catch-up. Unchecked: each thread touches a
/// disjoint set of its elements (its pods' timelines and news), and a pod's timeline touches
/// nothing outside itself.
struct DisjointElements<Element>: @unchecked Sendable {
    let buffer: UnsafeMutableBufferPointer<Element>
    init(_ buffer: UnsafeMutableBufferPointer<Element>) { self.buffer = buffer }
}

/// `lora-affinity-scorer`, for the request's target model: 1 if the adapter is running there,
/// 0.8 if the endpoint has a free adapter slot (`active + waiting < max_lora`), 0.6 if the
/// adapter is waiting there, else 0.
public struct LoRAAffinityScorer: Scorer {
    public let typeName = "lora-affinity-scorer"
    public init() {}

    public func score(_ request: SchedulingRequest, _ candidates: [Candidate], _ indices: [Int], _ state: inout CycleState) -> [Double] {
        indices.map { index in
            guard let metrics = candidates[index].metrics else { return 0 }
            if metrics.activeAdapters.contains(request.targetModel) { return 1 }
            if metrics.activeAdapters.count + metrics.waitingAdapters.count < metrics.maxActiveAdapters { return 0.8 }
            if metrics.waitingAdapters.contains(request.targetModel) { return 0.6 }
            return 0
        }
    }
}

/// Where adapters live: `max_loras` GPU slots and a `max_cpu_loras` host cache, both LRU, as
/// vLLM's LRU adapter managers. Bringing an adapter into a slot costs load time; one that is not
/// in the host cache is read from storage first.
struct LoRAResidency {
    let gpuSlots: Int
    let cpuSlots: Int
    /// Most recently used last.
    private(set) var onGPU: [String] = []
    private(set) var onCPU: [String] = []

    init(gpuSlots: Int, cpuSlots: Int) {
        self.gpuSlots = gpuSlots
        self.cpuSlots = max(cpuSlots, gpuSlots)
    }

    /// Makes every adapter of a batch resident and returns those that had to be loaded, and
    /// whether each came from storage (a host-cache miss). The scheduler never puts more than
    /// `gpuSlots` distinct adapters in one batch.
    mutating func activate(_ adapters: [LoRAAdapter]) -> [(adapter: LoRAAdapter, fromStorage: Bool)] {
        var loaded: [(LoRAAdapter, Bool)] = []
        let names = Set(adapters.map(\.name))
        for adapter in adapters {
            if let index = onGPU.firstIndex(of: adapter.name) {
                onGPU.remove(at: index)
                onGPU.append(adapter.name)
                continue
            }
            if onGPU.count >= gpuSlots, let victim = onGPU.firstIndex(where: { !names.contains($0) }) {
                onGPU.remove(at: victim)
            }
            onGPU.append(adapter.name)
            let cached = onCPU.contains(adapter.name)
            cache(adapter.name)
            loaded.append((adapter, !cached))
        }
        return loaded
    }

    /// Puts an adapter in the host cache (vLLM's add_lora, as the runtime load route calls it).
    mutating func cache(_ name: String) {
        if let index = onCPU.firstIndex(of: name) { onCPU.remove(at: index) }
        onCPU.append(name)
        if onCPU.count > cpuSlots { onCPU.removeFirst() }
    }
}

import InferenceAPI
import Testing

@Suite struct PrometheusTests {
    @Test func histogramIsCumulativeAndParsesBack() throws {
        var histogram = PrometheusHistogram(upperBounds: [0.1, 1, 10])
        for value in [0.05, 0.5, 0.7, 50] { histogram.observe(value) }
        var writer = PrometheusWriter()
        writer.family("vllm:x", help: "An example.", type: .histogram)
        writer.histogram("vllm:x", labels: [("model_name", "m \"q\""), ("engine", "0")], histogram)
        let samples = try Prometheus.parse(String(buffer: writer.buffer))
        let buckets = samples.filter { $0.name == "vllm:x_bucket" }.map(\.value)
        #expect(buckets == [1, 3, 3, 4])
        #expect(samples.first { $0.name == "vllm:x_bucket" }?.labels["model_name"] == "m \"q\"")
        #expect(samples.first { $0.name == "vllm:x_count" }?.value == 4)
        #expect(samples.first { $0.name == "vllm:x_sum" }?.value == 51.25)
    }

    @Test(arguments: [(3.0, "3.0"), (0.0421, "0.0421"), (1755000000.0, "1755000000.0"), (Double.infinity, "+Inf")])
    func formatsAsPython(_ value: Double, _ expected: String) {
        #expect(Prometheus.format(value) == expected)
    }
}

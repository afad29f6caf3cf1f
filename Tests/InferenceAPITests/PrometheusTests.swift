import InferenceAPI
import Testing

@Suite struct PrometheusTests {
    @Test func histogramIsCumulativeAndParsesBack() throws {
        var histogram = PrometheusHistogram(upperBounds: [0.1, 1, 10])
        for value in [0.05, 0.5, 0.7, 50] { histogram.observe(value) }
        var writer = PrometheusWriter()
        writer.family("vllm:x", help: "An example.", type: .histogram)
        let lines = HistogramLines(name: "vllm:x", labels: [("model_name", "m \"q\""), ("engine", "0")], upperBounds: [0.1, 1, 10])
        writer.histogram(lines, histogram)
        let samples = try Prometheus.parse(String(buffer: writer.buffer))
        let buckets = samples.filter { $0.name == "vllm:x_bucket" }.map(\.value)
        #expect(buckets == [1, 3, 3, 4])
        #expect(samples.first { $0.name == "vllm:x_bucket" }?.labels["model_name"] == "m \"q\"")
        #expect(samples.first { $0.name == "vllm:x_count" }?.value == 4)
        #expect(samples.first { $0.name == "vllm:x_sum" }?.value == 51.25)
    }

    /// prometheus_client's floatToGoString: Python's repr, Go's exponent form from 1e6 up.
    @Test(arguments: [
        (3.0, "3.0"), (0.0421, "0.0421"), (1e-05, "1e-05"), (123456.0, "123456.0"), (1234567.0, "1.234567e+06"),
        (1755000000.0, "1.755e+09"), (1764612345.125, "1.764612345125e+09"), (-2500000.0, "-2500000.0"), (Double.infinity, "+Inf"),
    ])
    func formatsAsPrometheusClient(_ value: Double, _ expected: String) {
        #expect(Prometheus.format(value) == expected)
    }

    /// client_golang: Go's strconv.FormatFloat(v, 'g', -1, 64).
    @Test(arguments: [
        (1.0, "1"), (0.005, "0.005"), (123456.0, "123456"), (1e6, "1e+06"), (1048576.0, "1.048576e+06"), (0.0001, "0.0001"),
        (1e-05, "1e-05"), (32778.0, "32778"), (1.5, "1.5"), (-2500000.0, "-2.5e+06"), (1764612345.125, "1.764612345125e+09"),
        (0.0, "0"), (Double.infinity, "+Inf"), (1e22, "1e+22"), (2.5e-7, "2.5e-07"),
    ])
    func formatsAsClientGolang(_ value: Double, _ expected: String) {
        #expect(Prometheus.formatGo(value) == expected)
    }

    @Test func labelsAreSortedAndEscaped() {
        #expect(Prometheus.labels([("model_name", "a\"b"), ("engine", "0"), ("le", "+Inf")]) == #"{engine="0",le="+Inf",model_name="a\"b"}"#)
    }
}

@Suite struct XXHash64Tests {
    /// Reference values from the `xxhash` Python package (the C library).
    @Test(arguments: [
        ("", UInt64(0), UInt64(0xEF46_DB37_51D8_E999)), ("a", 0, 0xD24E_C4F1_A98C_6E5B), ("abc", 0, 0x44BC_2CF5_AD77_0999),
        ("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJ", 0, 0xB35E_125D_D455_5E6D), ("hello world", 7, 0xE318_8F1F_1023_E4D0),
    ])
    func matchesTheReference(_ text: String, _ seed: UInt64, _ expected: UInt64) {
        #expect(XXHash64.hash(Array(text.utf8), seed: seed) == expected)
    }
}

import Foundation

/// A line chart of one metric against offered rate, as a standalone SVG: one colour per run,
/// p50 solid and p90 dashed, hollow markers on stages the machine limited.
enum SVGChart {
    static let width = 720.0, height = 420.0
    static let left = 72.0, right = 180.0, top = 40.0, bottom = 56.0
    static let colours = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]

    struct Series {
        var name: String
        var colour: String
        var dashed: Bool
        var points: [(x: Double, y: Double, faithful: Bool)]
    }

    /// The chart, or nil when no run measured the metric.
    static func draw(_ metric: BenchOutput.ChartedMetric, reports: [BenchReport]) -> String? {
        var series: [Series] = []
        for (number, report) in reports.enumerated() {
            for (line, name) in metric.lines.enumerated() {
                let points = report.stages.compactMap { stage -> (x: Double, y: Double, faithful: Bool)? in
                    guard let values = metric.values(stage), line < values.count, values[line].isFinite else { return nil }
                    return (stage.rate, values[line], stage.unfaithful == nil)
                }
                guard !points.isEmpty else { continue }
                series.append(Series(
                    name: [report.label, name].filter { !$0.isEmpty }.joined(separator: " "), colour: colours[number % colours.count],
                    dashed: line > 0, points: points))
            }
        }
        guard !series.isEmpty else { return nil }
        let xs = series.flatMap { $0.points.map(\.x) }
        let ys = series.flatMap { $0.points.map(\.y) }
        let xAxis = Axis(low: min(0, xs.min()!), high: xs.max()!)
        let yAxis = Axis(low: 0, high: ys.max()!)
        let plotWidth = width - left - right, plotHeight = height - top - bottom
        func px(_ x: Double) -> Double { left + (x - xAxis.low) / (xAxis.high - xAxis.low) * plotWidth }
        func py(_ y: Double) -> Double { top + plotHeight - (y - yAxis.low) / (yAxis.high - yAxis.low) * plotHeight }

        var svg = """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" viewBox="0 0 \(Int(width)) \(Int(height))" \
            font-family="Helvetica, Arial, sans-serif" font-size="12">
            <rect width="100%" height="100%" fill="white"/>
            <text x="\(left)" y="24" font-size="15" font-weight="bold">\(escape(metric.title))</text>

            """
        for tick in yAxis.ticks {
            let y = format(py(tick))
            svg += "<line x1=\"\(format(left))\" y1=\"\(y)\" x2=\"\(format(left + plotWidth))\" y2=\"\(y)\" stroke=\"#e5e5e5\"/>\n"
            svg += "<text x=\"\(format(left - 6))\" y=\"\(y)\" text-anchor=\"end\" dominant-baseline=\"middle\">\(Axis.label(tick))</text>\n"
        }
        for tick in xAxis.ticks {
            let x = format(px(tick))
            svg += "<line x1=\"\(x)\" y1=\"\(format(top + plotHeight))\" x2=\"\(x)\" y2=\"\(format(top + plotHeight + 4))\" stroke=\"#333\"/>\n"
            svg += "<text x=\"\(x)\" y=\"\(format(top + plotHeight + 18))\" text-anchor=\"middle\">\(Axis.label(tick))</text>\n"
        }
        svg += "<rect x=\"\(format(left))\" y=\"\(format(top))\" width=\"\(format(plotWidth))\" height=\"\(format(plotHeight))\" fill=\"none\" stroke=\"#333\"/>\n"
        svg += "<text x=\"\(format(left + plotWidth / 2))\" y=\"\(format(height - 14))\" text-anchor=\"middle\">offered rate (requests/s)</text>\n"
        svg += "<text transform=\"translate(18 \(format(top + plotHeight / 2))) rotate(-90)\" text-anchor=\"middle\">\(escape(metric.unit))</text>\n"

        for (index, line) in series.enumerated() {
            let path = line.points.map { "\(format(px($0.x))),\(format(py($0.y)))" }.joined(separator: " ")
            let dash = line.dashed ? " stroke-dasharray=\"6 4\"" : ""
            svg += "<polyline points=\"\(path)\" fill=\"none\" stroke=\"\(line.colour)\" stroke-width=\"2\"\(dash)/>\n"
            for point in line.points {
                let fill = point.faithful ? line.colour : "white"
                svg += "<circle cx=\"\(format(px(point.x)))\" cy=\"\(format(py(point.y)))\" r=\"3.5\" fill=\"\(fill)\" stroke=\"\(line.colour)\" stroke-width=\"1.5\"/>\n"
            }
            let legendY = top + 8 + Double(index) * 18
            let legendX = left + plotWidth + 16
            svg += "<line x1=\"\(format(legendX))\" y1=\"\(format(legendY))\" x2=\"\(format(legendX + 22))\" y2=\"\(format(legendY))\" stroke=\"\(line.colour)\" stroke-width=\"2\"\(dash)/>\n"
            svg += "<text x=\"\(format(legendX + 28))\" y=\"\(format(legendY))\" dominant-baseline=\"middle\">\(escape(line.name))</text>\n"
        }
        if series.contains(where: { $0.points.contains { !$0.faithful } }) {
            let y = top + 8 + Double(series.count) * 18 + 8
            svg += "<text x=\"\(format(left + plotWidth + 16))\" y=\"\(format(y))\" font-size=\"10\" fill=\"#555\">○ machine-limited stage</text>\n"
        }
        return svg + "</svg>\n"
    }

    static func format(_ value: Double) -> String { String(format: "%.1f", value) }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }

    /// A linear axis from `low` to a round number at or above `high`, with 4–8 round ticks.
    struct Axis {
        let low: Double
        let high: Double
        let step: Double

        init(low: Double, high: Double) {
            let span = max(high - low, abs(high) * 1e-3, 1e-9)
            let raw = span / 5
            let magnitude = Foundation.pow(10, Foundation.floor(Foundation.log10(raw)))
            let step = [1.0, 2, 2.5, 5, 10].map { $0 * magnitude }.first { $0 >= raw } ?? 10 * magnitude
            self.low = Foundation.floor(low / step) * step
            self.high = max(Foundation.ceil(high / step) * step, self.low + step)
            self.step = step
        }

        var ticks: [Double] {
            stride(from: low, through: high + step / 2, by: step).map { $0 }
        }

        static func label(_ value: Double) -> String {
            if value == value.rounded(), abs(value) < 1e9 { return String(Int(value)) }
            return String(format: "%g", (value * 1000).rounded() / 1000)
        }
    }
}

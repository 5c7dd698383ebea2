import Crypto
import FelhomCore
import Foundation

extension HostReport {
    /// A digest of what the box *is*, without what it merely *measures*: the report with its time,
    /// the sampled host metrics (CPU, memory and disk use, uptime, load) and the hardware sensors
    /// blanked, then SHA-256 over its encoding (sorted keys). Two reports with the same digest
    /// differ only in samples, so the history keeps one of them per heartbeat; any change of a
    /// guest, a backup, a route, a version or the applied generation makes a new row at once.
    var stateDigest: String {
        var state = self
        state.reportedAt = Date(timeIntervalSince1970: 0)
        state.host.cpu = 0
        state.host.memoryUsed = 0
        state.host.diskUsed = 0
        state.host.uptime = 0
        state.host.load = []
        state.hardware = nil
        return Data(SHA256.hash(data: state.encoded())).base64EncodedString()
    }
}

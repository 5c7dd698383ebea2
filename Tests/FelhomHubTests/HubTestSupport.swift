import FelhomCore
import FelhomHub
import FelhomTestSupport
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore

/// A valid host report (the golden shape).
func sampleReport(
    guests: String =
        #"[{"vmid":100,"name":"web","status":"running","spec":{"cores":2,"cpuunits":200,"memory":2048,"disk":8,"description":"apps\n","mount_points":[{"key":"rootfs","volume":"local-lvm:vm-100-disk-0","backup":true,"size":"8G"}]}}]"#
) -> String {
    #"{"reported_at":"2026-11-23T12:00:00Z","agent_version":"0.1.0","host":{"cpu":0.12,"memory_total":34359738368,"memory_used":2576980377,"disk_total":107374182400,"disk_used":10737418240,"uptime":86400,"load":[0.05,0.1,0.08],"kernel":"6.8.12-4-pve","pve_version":"9.1.3"},"guests":\#(guests),"cloudflared":"running","storage_targets":[],"backups":[],"restore_tests":[],"pbs_snapshots":[],"audit_tail":[],"journal_in_flight":[]}"#
}

let sampleGuestReport =
    #"{"reported_at":"2026-11-23T12:00:00Z","controller_version":"0.1.0","stacks":[{"name":"immich","state":"running","protected":false},{"name":"traefik","state":"running","protected":true}],"telemetry":[],"log_issues":[],"storage_paths":[]}"#

/// A valid desired state: the guest of `sampleReport()` (in sync) plus one more.
let sampleDesired =
    #"{"guests":[{"vmid":100,"name":"web","cpu":2,"memory_mb":2048,"disk_gb":8,"run_state":"running","description":"apps"},{"vmid":101,"name":"db","cpu":0.5,"memory_mb":1024,"disk_gb":4,"mount_points":[{"key":"mp0","path":"/srv/media","size_gb":100,"backup":false,"bulk":true}]}],"versions":{"agent":"0.1.0"}}"#

import FelhomAPI
import FelhomController
import FelhomCore
import FelhomHubClient
import FelhomTestSupport
import Foundation
import Testing

@Suite struct GuestReporterTests {
    @Test func readsRestartCountsFromDockerInspect() {
        let json = #"[{"Name":"/photos-app-1","RestartCount":4,"State":{}},{"Name":"/vault-app-1","RestartCount":0},{"Id":"x"}]"#
        #expect(ContainerStats.restartCounts(inspectJSON: json) == ["photos-app-1": 4, "vault-app-1": 0])
        #expect(ContainerStats.restartCounts(inspectJSON: "not json").isEmpty)
    }

    @Test func parsesDockerStats() {
        let out = """
            {"BlockIO":"0B / 0B","CPUPerc":"1.25%","Container":"a1","ID":"a1","MemPerc":"0.01%","MemUsage":"1.5MiB / 23.4GiB","Name":"photos-app-1","NetIO":"0B / 0B","PIDs":"2"}
            {"CPUPerc":"0.00%","MemUsage":"512kB / 1GiB","Name":"vault-app-1"}
            not json
            """
        let stats = ContainerStats.parse(out)
        #expect(
            stats == [
                .init(name: "photos-app-1", cpuPercent: 1.25, memoryBytes: 1_572_864),
                .init(name: "vault-app-1", cpuPercent: 0, memoryBytes: 512_000),
            ])
    }

    /// A report built from the stacks, sent to a real hub with the guest's own key: the hub
    /// ingests it (its contract checks included) and answers the control envelope.
    @Test func aRealHubIngestsTheControllersReport() async throws {
        let w = try QuiesceWorld(["photos", "vault", "traefik", "Broken"])
        let compose = FakeCompose(running: ["photos": true, "vault": false, "traefik": true])
        var settings = ControllerSettings()
        settings.storagePaths = [.init(path: "/mnt/data", label: "data disk", isDefault: true)]
        try settings.save(stateDir: w.stateDir)
        let reporter = GuestReporter(
            stacks: Stacks(directory: w.stacksDir, protectedNames: ["traefik"], runtime: compose), stateDir: w.stateDir,
            stats: { [.init(name: "photos-app-1", cpuPercent: 2.5, memoryBytes: 1 << 20, restartCount: 3)] })
        let report: GuestReport = try await reporter.report(now: Date(timeIntervalSince1970: 1_796_000_000))
        let names: [String] = report.stacks.map { $0.name }
        let states: [GuestReport.Stack.State] = report.stacks.map { $0.state }
        #expect(names == ["broken", "photos", "traefik", "vault"], "compose project names")
        #expect(states == [.stopped, .running, .running, .stopped])
        #expect(report.stacks.first { $0.name == "traefik" }?.protected == true)
        #expect(report.telemetry.first?["stack"] == "broken")
        #expect(
            report.telemetry.contains {
                $0["stack"] == "photos" && $0["memory_bytes"] == .int(1 << 20) && $0["cpu_percent"] == .double(2.5) && $0["restarts"] == .int(3)
            })
        #expect(report.storagePaths.first?["label"] == "data disk" && report.storagePaths.first?["disconnected"] == .bool(false))
        // The same bytes decode under the hub's contract (and encode back to the same bytes).
        #expect(try GuestReport.decode(report.encoded()).encoded() == report.encoded())
        try await withRunningHub { hub in
            let op = try HubClient(url: hub.url, key: Secret(operatorKey))
            let customer = try await op.createCustomer(NewCustomer(name: "A", email: "a@example.hu", domain: "a.example.hu"))
            let host = try await op.createHost(customerID: customer, name: "box")
            let guest = try await op.createGuest(hostID: host.id, name: "apps", idempotencyKey: nil)
            let asGuest = try HubClient(url: hub.url, key: guest.apiKey)
            let envelope = try await asGuest.postGuestReport(report)
            #expect(envelope.pollIntervalSeconds > 0)
            // And the generated config a controller reads carries only what the hub may decide.
            let config = try await asGuest.controllerConfig(guestID: guest.id)
            #expect(ControllerHubSettings.read(config).findings.isEmpty, "\(config)")
        }
    }
}

import FelhomCore
import Foundation

/// The public API description served at `/openapi.yaml`. A test checks every route is in it.
enum OpenAPIDocument {
    /// The e-mail rule as a YAML single-quoted pattern (quotes doubled).
    static let emailPattern = "^" + Pattern.email.replacingOccurrences(of: "'", with: "''") + "$"

    static let yaml = """
        openapi: 3.0.3
        info:
          title: Felhom hub API
          version: "1"
          description: |
            JSON API of the Felhom hub. Authenticate with `Authorization: Bearer KEY`: the operator key
            (configuration), or a customer, host or guest key (shown once when issued). Host, guest and
            customer keys reach only their own customer's rows. Errors are
            `{"error": {"code": "...", "message": "...", "path": "$.field"}}`. Every time is RFC 3339 in UTC
            (`2026-11-30T16:49:09Z`). The same types are the `FelhomAPI` Swift module; `FelhomHubClient` is
            the typed client.
        components:
          responses:
            Error:
              description: >-
                An error a person can act on: 400 bad input (error.path names it), 401 missing or unknown key,
                403 the key may not do this, 404 not found (also for other customers' rows), 405 method not allowed
                (Allow lists the methods), 409 conflict, 413 body too large, 429 rate limited (Retry-After), 503 the
                database is unavailable.
              content:
                application/json:
                  schema:
                    type: object
                    required: [error]
                    properties:
                      error:
                        type: object
                        required: [code, message]
                        properties:
                          code: {type: string}
                          message: {type: string}
                          path: {type: string}
                          quota: {type: string, description: "quota_exceeded: the quota's field name (max_memory_mb, max_guests, max_routes, max_public_ipv4)"}
                          limit: {type: integer, minimum: -9223372036854775808, maximum: 9223372036854775807, description: "quota_exceeded: the limit"}
                          usage: {type: integer, minimum: -9223372036854775808, maximum: 9223372036854775807, description: "quota_exceeded: the customer's usage before the change"}
                          requested: {type: number, description: "quota_exceeded: what the change adds; capacity_exceeded: the summed request"}
                          host_id: {type: string, description: "capacity_exceeded: the host"}
                          resource: {type: string, description: "capacity_exceeded: memory or cpu"}
                          allocatable: {type: number, description: "capacity_exceeded: what the host can allocate"}
                          hosts: {type: array, description: "no_capacity: each host's binding resource", items: {type: object, properties: {host_id: {type: string}, resource: {type: string, enum: [memory, cpu, capacity_unknown]}, free: {type: number, nullable: true}, requested: {type: number}}}}
          securitySchemes:
            bearer: {type: http, scheme: bearer}
          schemas:
            HostID: {type: string, pattern: '^[A-Za-z0-9_-]{1,128}$'}
            VMID: {type: string, pattern: '^[1-9][0-9]{2,8}$', description: a PVE vmid}
            OpTTL: {type: integer, minimum: 60, maximum: 86400, nullable: true}
            KeyID: {type: string, pattern: '^[A-Za-z0-9+/=:_.-]{0,128}$', nullable: true}
            Error:
              type: object
              properties:
                error:
                  type: object
                  properties: {code: {type: string}, message: {type: string}, path: {type: string}}
            ResourceUsage:
              type: object
              required: [cpu, memory_mb, guests, routes, public_ipv4]
              properties:
                cpu: {type: number, minimum: 0}
                memory_mb: {type: integer, maximum: 9223372036854775807, minimum: 0}
                guests: {type: integer, maximum: 9223372036854775807, minimum: 0}
                routes: {type: integer, maximum: 9223372036854775807, minimum: 0}
                public_ipv4: {type: integer, maximum: 9223372036854775807, minimum: 0}
            Quotas:
              type: object
              required: [max_memory_mb, max_guests, max_routes, max_public_ipv4, usage, exceeded]
              properties:
                max_memory_mb: {type: integer, minimum: -9223372036854775808, maximum: 9223372036854775807, nullable: true}
                max_guests: {type: integer, minimum: -9223372036854775808, maximum: 9223372036854775807, nullable: true}
                max_routes: {type: integer, minimum: -9223372036854775808, maximum: 9223372036854775807, nullable: true}
                max_public_ipv4: {type: integer, minimum: -9223372036854775808, maximum: 9223372036854775807, nullable: true}
                usage: {$ref: "#/components/schemas/ResourceUsage"}
                exceeded: {type: array, items: {type: string, enum: [max_memory_mb, max_guests, max_routes, max_public_ipv4]}}
            Release:
              type: object
              required: [component, version, sha256, size, manifest, signature, signer, created_at]
              properties:
                component: {type: string, enum: [agent, controller]}
                version: {type: string}
                sha256: {type: string, pattern: '^[0-9a-f]{64}$'}
                size: {type: integer, maximum: 9223372036854775807, minimum: 1}
                manifest: {type: string, description: "the signed RFC 8785 canonical JSON {component, version, sha256, size, created_at}, verbatim"}
                signature: {type: string, description: "SSHSIG armor, namespace felhom-release-v1, verbatim"}
                signer: {type: string, description: "SHA-256 fingerprint of the signing key (the box decides whether it trusts it)"}
                created_at: {type: string, format: date-time}
                uploaded_at: {type: string, format: date-time, nullable: true, description: "null until the asset is uploaded and matches"}
                rollout:
                  type: array
                  nullable: true
                  items:
                    type: object
                    required: [host_id, stage, state]
                    properties:
                      host_id: {type: string}
                      stage: {type: string, enum: [canary, all]}
                      state: {type: string, enum: [pending, running, failed]}
                      reason: {type: string, nullable: true}
            HostCapacity:
              type: object
              required: [host_id, usage]
              properties:
                host_id: {type: string}
                allocatable_cpu: {type: number, nullable: true}
                allocatable_memory_mb: {type: integer, minimum: -9223372036854775808, maximum: 9223372036854775807, nullable: true}
                usage: {$ref: "#/components/schemas/ResourceUsage"}
            GuestPlacement:
              type: object
              required: [host_id, vmid, reason, free_memory_mb, published]
              properties:
                host_id: {type: string}
                vmid: {type: integer, minimum: -9223372036854775808, maximum: 9223372036854775807}
                reason: {type: string}
                free_memory_mb: {type: integer, minimum: -9223372036854775808, maximum: 9223372036854775807}
                free_cpu: {type: number, nullable: true}
                published: {type: boolean}
            DesiredState:
              type: object
              additionalProperties: false
              description: >-
                A host's desired state. Unknown keys are refused at every level (a typo must not be ignored).
                Rules beyond the schema: vmids, guest names and a guest's mount-point keys are unique; request ids are
                unique and a request's vmid is one of the guests. `requests` is hub-managed (POST /api/v1/hosts/{id}/requests):
                a draft's own list is dropped on PUT, and the published requests carry over at publish.
              properties:
                guests:
                  type: array
                  nullable: true
                  items:
                    type: object
                    additionalProperties: false
                    required: [vmid, name, cpu, memory_mb, disk_gb]
                    properties:
                      vmid: {type: integer, minimum: 100, maximum: 999999999}
                      name: {type: string, pattern: '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'}
                      cpu: {type: number, minimum: 0, exclusiveMinimum: true, maximum: 512, multipleOf: 0.01, description: "decimal vCPU (0.25, 0.5, 1, 2), a proportional weight; at most two decimals"}
                      memory_mb: {type: integer, minimum: 16, maximum: 9223372036854775807}
                      disk_gb: {type: integer, minimum: 1, maximum: 499, description: "root disk in GiB; 500 or more would carry bulk data in every backup (the bulk-volume rule)"}
                      run_state: {type: string, enum: [running, stopped, null], default: running, nullable: true}
                      description: {type: string, maxLength: 8192, nullable: true}
                      ephemeral: {type: boolean, default: false, nullable: true}
                      backup: {type: boolean, default: true, nullable: true, description: "false opts the guest out of scheduled backups and restore tests"}
                      cpu_limit: {type: number, minimum: 0, exclusiveMinimum: true, maximum: 8192, multipleOf: 0.01, nullable: true, description: "a hard CPU limit in vCPUs (PVE cpulimit); absent: none, cpu is only a weight"}
                      public_ipv4: {type: boolean, default: false, nullable: true, description: "the guest gets a public IPv4 address (counts against max_public_ipv4)"}
                      mount_points:
                        type: array
                        nullable: true
                        items:
                          type: object
                          additionalProperties: false
                          required: [key, path, size_gb, backup, bulk]
                          properties:
                            key: {type: string, pattern: '^mp([0-9]|[1-9][0-9]|1[0-9][0-9]|2[0-4][0-9]|25[0-5])$'}
                            path: {type: string, pattern: '^/[^,]+$', description: an absolute path other than /, without commas}
                            size_gb: {type: integer, minimum: 1, maximum: 9223372036854775807}
                            backup: {type: boolean}
                            bulk: {type: boolean, description: bulk volumes must have backup=false}
                            backup_enabled: {type: boolean, nullable: true, description: "snapshotted to object storage (default true; docs/object-storage.md)"}
                          allOf:
                            - not: {type: object, required: [bulk, backup], properties: {bulk: {enum: [true]}, backup: {enum: [true]}}}
                            - not: {type: object, required: [size_gb, backup], properties: {size_gb: {minimum: 500}, backup: {enum: [true]}}, description: "a volume of 500 GiB or more is bulk: backup must be false"}
                storage_policy:
                  type: object
                  nullable: true
                  additionalProperties: false
                  properties:
                    backup_storage: {type: string, nullable: true}
                    backup_hour: {type: integer, minimum: 0, maximum: 23, nullable: true}
                    keep_last: {type: integer, minimum: 1, maximum: 1000, nullable: true}
                versions: {type: object, nullable: true, additionalProperties: {type: string, pattern: '^[0-9]+\\.[0-9]+\\.[0-9]+([-+][0-9A-Za-z.-]+)?$'}}
                storage:
                  type: array
                  nullable: true
                  uniqueItems: true
                  description: Disk policies by filesystem UUID (the storage handshake); at most 64, uuids unique, at most one default.
                  items:
                    type: object
                    additionalProperties: false
                    required: [uuid, label, role]
                    properties:
                      uuid: {type: string, pattern: '^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4})$'}
                      label: {type: string, minLength: 1, maxLength: 80, pattern: '^[^\\x00-\\x1f\\x7f]+$'}
                      role: {type: string, enum: [backup, bulk, guest-data]}
                      default: {type: boolean, nullable: true}
                routes:
                  type: array
                  nullable: true
                  uniqueItems: true
                  description: "Public TCP routes to guest ports (ADR 0009); at most 256, ids and listen ports unique, guest_vmid one of this state's guests. proxy_protocol v2 needs backend_expects_proxy_protocol true; probe_hello only with v2."
                  items:
                    type: object
                    additionalProperties: false
                    required: [id, guest_vmid, listen_port, target_port]
                    properties:
                      id: {type: string, pattern: '^[a-z0-9][a-z0-9-]{0,39}$'}
                      guest_vmid: {type: integer, minimum: 100, maximum: 999999999}
                      listen_port: {type: integer, minimum: 1, maximum: 65535}
                      target_port: {type: integer, minimum: 1, maximum: 65535}
                      protocol: {type: string, enum: [tcp, null], nullable: true}
                      proxy_protocol: {type: string, enum: ["off", v2, null], nullable: true}
                      backend_expects_proxy_protocol: {type: boolean, nullable: true}
                      probe_hello: {type: string, nullable: true, minLength: 1, maxLength: 256, pattern: '^[\\x20-\\x7E\\r\\n\\t]+$', description: "v2 only: sent by the active probe after the PROXY v2 LOCAL header (e.g. GET / HTTP/1.0 and an empty line)."}
                    anyOf:
                      - {properties: {proxy_protocol: {enum: ["off", null]}, probe_hello: {nullable: true, enum: [null]}}}
                      - {required: [proxy_protocol, backend_expects_proxy_protocol], properties: {proxy_protocol: {enum: [v2]}, backend_expects_proxy_protocol: {enum: [true]}}}
                requests:
                  type: array
                  nullable: true
                  maxItems: 20
                  items: {$ref: "#/components/schemas/OperatorRequest"}
            OperatorRequest:
              type: object
              additionalProperties: false
              required: [id, kind, vmid]
              description: A one-off request to the box (the agent acts on each id once).
              properties:
                id: {type: string, pattern: '^[a-z0-9-]{1,40}$'}
                kind: {type: string, enum: [backup, restore_test]}
                vmid: {type: integer, minimum: 100, maximum: 999999999}
                requested_at: {type: string, nullable: true}
            ControlEnvelope:
              type: object
              required: [poll_interval_seconds, blocked, desired_generation, has_signed_ops]
              properties:
                poll_interval_seconds: {type: integer, minimum: -9223372036854775808, maximum: 9223372036854775807}
                blocked: {type: boolean}
                desired_generation: {type: integer, minimum: -9223372036854775808, maximum: 9223372036854775807}
                has_signed_ops: {type: boolean}
            Timestamp: {type: string, format: date-time, description: "RFC 3339 in UTC, whole seconds (2026-11-30T16:49:09Z): every time in this API"}
            Customer:
              type: object
              required: [id, name, email, domain, timezone, language, notify_types, notify_types_default, created_at, suspended]
              properties:
                id: {type: string}
                name: {type: string}
                email: {type: string}
                domain: {type: string}
                timezone: {type: string}
                language: {type: string, enum: [hu, en]}
                notify_types: {type: array, items: {type: string}}
                notify_types_default: {type: boolean}
                created_at: {$ref: "#/components/schemas/Timestamp"}
                suspended: {type: boolean}
            OperatorKey:
              type: object
              required: [id, name, role, fingerprint, public_key, created_at]
              properties:
                id: {type: string}
                name: {type: string}
                role: {type: string, enum: [operational, recovery]}
                fingerprint: {type: string}
                public_key: {type: string}
                created_at: {$ref: "#/components/schemas/Timestamp"}
            TunnelToken:
              type: object
              required: [host_id, set]
              properties:
                host_id: {type: string}
                set: {type: boolean}
                fingerprint: {type: string, description: "sha256: and 16 hex digits of the token's SHA-256"}
                tunnel_id: {type: string}
                updated_at: {$ref: "#/components/schemas/Timestamp"}
                connector_token: {type: string, description: the token itself, to the host's own key only}
            SignedOp:
              type: object
              required: [id, host_id, host_name, customer_id, customer_name, op, summary, blob, status, expires_at, created_at]
              properties:
                id: {type: string}
                host_id: {type: string}
                host_name: {type: string}
                customer_id: {type: string}
                customer_name: {type: string}
                guest_id: {type: string}
                op: {type: string}
                summary: {type: string, description: "hub text for people; the CLI shows what it decodes from blob, never this"}
                blob: {type: string, description: the exact canonical bytes to sign}
                status: {type: string, enum: [pending_signature, signed, delivered, applied, rejected, expired, cancelled]}
                signature: {type: string}
                signer: {type: string}
                reason: {type: string}
                expires_at: {$ref: "#/components/schemas/Timestamp"}
                created_at: {$ref: "#/components/schemas/Timestamp"}
                volumes_not_in_backups: {type: array, items: {type: object, required: [key, volume], properties: {key: {type: string}, volume: {type: string}}}}
                duplicate_of: {type: array, items: {type: string}, description: "other in-flight ops for the same host, guest and operation"}
                guest_name: {type: string, description: "the guest's name as its host last reported it"}
            Drift:
              type: object
              required: [host_id, generation, in_sync, guests]
              properties:
                host_id: {type: string}
                generation: {type: integer, minimum: -9223372036854775808, maximum: 9223372036854775807}
                reported_at: {$ref: "#/components/schemas/Timestamp"}
                in_sync: {type: boolean}
                guests:
                  type: array
                  items:
                    type: object
                    required: [state, vmid, name, differences]
                    properties:
                      state: {type: string, enum: [in_sync, differs, missing, unexpected, unknown]}
                      vmid: {type: integer, minimum: -9223372036854775808, maximum: 9223372036854775807}
                      name: {type: string}
                      desired_run_state: {type: string}
                      actual_status: {type: string}
                      differences: {type: array, items: {type: object, required: [field, desired, actual], properties: {field: {type: string}, desired: {type: string}, actual: {type: string}}}}
            EnrollmentToken:
              type: object
              required: [host_id, token, expires_at]
              properties: {host_id: {type: string}, token: {type: string}, expires_at: {$ref: "#/components/schemas/Timestamp"}, recovery: {type: boolean, nullable: true}}
            Suspension:
              type: object
              required: [id, suspended]
              properties: {id: {type: string}, suspended: {type: boolean}}
            VolumeSnapshot:
              type: object
              description: One volume snapshot in object storage (docs/object-storage.md); the data key only wrapped by the box's snapshot master key.
              additionalProperties: false
              required: [volume_id, snapshot_id, created_at, size, object_size, checksum, encryption_key_id, wrapped_data_key, object_key, state]
              properties:
                volume_id: {type: string, pattern: '^[A-Za-z0-9][A-Za-z0-9._:/-]{0,199}$'}
                snapshot_id: {type: string, pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$'}
                created_at: {type: string, format: date-time}
                size: {type: integer, minimum: 0, maximum: 9223372036854775807}
                object_size: {type: integer, minimum: 0, maximum: 9223372036854775807}
                checksum: {type: string, pattern: '^sha256:[0-9a-f]{64}$'}
                encryption_key_id: {type: string, pattern: '^snapkey:[0-9a-f]{16}$'}
                wrapped_data_key: {type: string, pattern: '^v1\\.[A-Za-z0-9+/]{80}$'}
                object_key: {type: string, minLength: 1, maxLength: 1024, pattern: '^[^\\x00-\\x1f\\x7f]+$'}
                state: {type: string, enum: [complete, deleted]}
            HostReport:
              type: object
              description: >-
                What a host agent sends on every poll (golden fixture in FelhomCore). Unknown fields are ignored and
                unknown status values read as unknown (a newer agent's report is accepted). Rules beyond the schema:
                vmids are unique within a report.
              required: [reported_at, agent_version, host, guests, cloudflared, storage_targets, backups, restore_tests, pbs_snapshots, audit_tail, journal_in_flight]
              properties:
                reported_at: {$ref: "#/components/schemas/Timestamp"}
                agent_version: {type: string}
                host:
                  type: object
                  required: [cpu, memory_total, memory_used, disk_total, disk_used, uptime, load, kernel, pve_version]
                  properties:
                    cpu: {type: number, minimum: 0, maximum: 1}
                    memory_total: {type: integer, minimum: 0, maximum: 9223372036854775807}
                    memory_used: {type: integer, minimum: 0, maximum: 9223372036854775807}
                    disk_total: {type: integer, minimum: 0, maximum: 9223372036854775807}
                    disk_used: {type: integer, minimum: 0, maximum: 9223372036854775807}
                    uptime: {type: integer, minimum: 0, maximum: 9223372036854775807}
                    load: {type: array, items: {type: number}}
                    kernel: {type: string}
                    pve_version: {type: string}
                    cores: {type: integer, minimum: 0, maximum: 65536, nullable: true, description: "the host's CPU count (absent from older agents)"}
                guests:
                  type: array
                  items:
                    type: object
                    required: [vmid, name, status]
                    properties:
                      vmid: {type: integer, minimum: 100, maximum: 999999999}
                      name: {type: string}
                      status: {type: string, description: "running, stopped or unknown; a value this hub does not know reads as unknown (a newer agent)"}
                      spec:
                        type: object
                        nullable: true
                        required: [memory, description, mount_points]
                        properties:
                          cores: {type: integer, minimum: -9223372036854775808, maximum: 9223372036854775807, nullable: true}
                          cpuunits: {type: integer, minimum: -9223372036854775808, maximum: 9223372036854775807, nullable: true}
                          cpulimit: {type: number, nullable: true, description: "PVE cpulimit (0: none; absent from older agents)"}
                          memory: {type: integer, minimum: 1, maximum: 9223372036854775807}
                          disk: {type: integer, minimum: -9223372036854775808, maximum: 9223372036854775807, nullable: true}
                          description: {type: string}
                          mount_points:
                            type: array
                            items:
                              type: object
                              required: [key, volume, backup]
                              properties: {key: {type: string}, volume: {type: string}, path: {type: string, nullable: true}, backup: {type: boolean}, size: {type: string, nullable: true}}
                cloudflared: {type: string, description: "running, stopped, degraded or unknown; a value this hub does not know reads as unknown"}
                storage_targets:
                  type: array
                  uniqueItems: true
                  description: The storage manifest, every non-system disk by filesystem UUID (at most 256, uuids unique).
                  items:
                    type: object
                    required: [uuid, state, default]
                    properties:
                      uuid: {type: string, minLength: 1, maxLength: 64}
                      state: {type: string, enum: [unassigned, attached, disconnected, decommissioned]}
                      device: {type: string, nullable: true}
                      label: {type: string, nullable: true}
                      fstype: {type: string, nullable: true}
                      size: {type: integer, minimum: 0, maximum: 9223372036854775807, nullable: true}
                      free: {type: integer, minimum: 0, maximum: 9223372036854775807, nullable: true}
                      role: {type: string, enum: [backup, bulk, guest-data, null], nullable: true}
                      default: {type: boolean}
                      mount_point: {type: string, nullable: true}
                      migrated_to: {type: string, nullable: true}
                      pve_storage: {type: string, nullable: true, description: "The Proxmox VE storage the agent made over the disk's mount point"}
                      first_seen: {type: string, format: date-time, nullable: true}
                      last_seen: {type: string, format: date-time, nullable: true}
                routes:
                  type: array
                  nullable: true
                  description: The public routes the agent runs (at most 256), with their health.
                  items:
                    type: object
                    required: [id, listen_port, state, open_connections]
                    properties:
                      id: {type: string, minLength: 1, maxLength: 40}
                      listen_port: {type: integer, minimum: 1, maximum: 65535}
                      state: {type: string, enum: [healthy, unhealthy, unknown]}
                      reason: {type: string, nullable: true, maxLength: 500}
                      message: {type: string, nullable: true, maxLength: 500}
                      checked_at: {type: string, format: date-time, nullable: true}
                      open_connections: {type: integer, minimum: 0, maximum: 9223372036854775807}
                volume_snapshots:
                  type: array
                  nullable: true
                  maxItems: 4096
                  description: How each guest volume is protected off-box (docs/object-storage.md); never silently skipped.
                  items:
                    type: object
                    required: [guest_vmid, key, volume_id, state]
                    properties:
                      guest_vmid: {type: integer, minimum: -9223372036854775808, maximum: 9223372036854775807}
                      key: {type: string, maxLength: 16}
                      volume_id: {type: string, maxLength: 300}
                      state: {type: string, enum: [protected, not_protected, disabled, failing]}
                      reason: {type: string, nullable: true, maxLength: 100}
                      message: {type: string, nullable: true, maxLength: 500}
                      last_snapshot_at: {type: string, format: date-time, nullable: true}
                backups:
                  type: array
                  items:
                    type: object
                    required: [vmid]
                    properties:
                      vmid: {type: integer, minimum: 100, maximum: 999999999}
                      last_success_at: {type: string, format: date-time, nullable: true}
                      volid: {type: string, nullable: true}
                      encrypted: {type: string, nullable: true}
                      verification: {type: string, nullable: true}
                      consistency: {type: string, nullable: true}
                      last_failure_at: {type: string, format: date-time, nullable: true}
                      last_failure_reason: {type: string, nullable: true}
                restore_tests:
                  type: array
                  items:
                    type: object
                    required: [vmid, at, passed]
                    properties:
                      vmid: {type: integer, minimum: 100, maximum: 999999999}
                      at: {type: string, format: date-time}
                      passed: {type: boolean}
                      volid: {type: string, nullable: true}
                      reason: {type: string, nullable: true}
                      restore_seconds: {type: number, minimum: 0, nullable: true}
                      healthy_seconds: {type: number, minimum: 0, nullable: true}
                pbs_snapshots:
                  type: array
                  maxItems: 5000
                  items:
                    type: object
                    required: [vmid, volid, size]
                    properties:
                      vmid: {type: integer, minimum: 100, maximum: 999999999}
                      volid: {type: string}
                      at: {type: string, format: date-time, nullable: true}
                      size: {type: integer, minimum: 0, maximum: 9223372036854775807}
                      encrypted: {type: string, nullable: true}
                      verification: {type: string, nullable: true}
                audit_tail:
                  type: array
                  maxItems: 200
                  items:
                    type: object
                    required: [at, op, kind, outcome]
                    properties:
                      at: {type: string, format: date-time}
                      op: {type: string}
                      kind: {type: string}
                      outcome: {type: string, enum: [done, failed]}
                      detail: {type: string, nullable: true}
                journal_in_flight: {type: array, items: {}}
                applied_generation: {type: integer, minimum: 0, maximum: 9223372036854775807, nullable: true, description: the desired generation the agent has fully applied}
            GuestReport:
              type: object
              description: >-
                What a guest controller sends. Rules beyond the schema: stack names are unique within a report.
              required: [reported_at, controller_version, stacks, telemetry, log_issues, storage_paths]
              properties:
                reported_at: {$ref: "#/components/schemas/Timestamp"}
                controller_version: {type: string}
                stacks:
                  type: array
                  items:
                    type: object
                    required: [name, state, protected]
                    properties:
                      name: {type: string, pattern: '^[a-z0-9][a-z0-9_.-]{0,62}$'}
                      state: {type: string, description: "running, stopped, partial or unknown; a value this hub does not know reads as unknown (a newer controller)"}
                      protected: {type: boolean}
                telemetry: {type: array, items: {}}
                log_issues: {type: array, items: {}}
                storage_paths: {type: array, items: {}}
            Host:
              type: object
              required: [id, customer_id, name, desired_generation, blocked, liveness]
              properties:
                id: {type: string}
                customer_id: {type: string}
                name: {type: string}
                desired_generation: {type: integer, minimum: -9223372036854775808, maximum: 9223372036854775807}
                blocked: {type: boolean}
                liveness: {type: string, enum: [unknown, alive, stale, down]}
                last_report_at: {$ref: "#/components/schemas/Timestamp"}
                last_report_age_seconds: {type: integer, minimum: -9223372036854775808, maximum: 9223372036854775807, nullable: true}
                applied_generation: {type: integer, minimum: -9223372036854775808, maximum: 9223372036854775807, nullable: true, description: "the desired generation the box says it applied; generation_not_applied is raised when it lags a published one beyond apply_deadline_seconds"}
            Event:
              type: object
              properties:
                id: {type: string}
                at: {$ref: "#/components/schemas/Timestamp"}
                source: {type: string, enum: [host, guest, hub]}
                host_id: {type: string, nullable: true}
                guest_id: {type: string, nullable: true}
                customer_id: {type: string, nullable: true}
                type: {type: string}
                severity: {type: string, enum: [info, warning, critical]}
                data: {type: object}
        security: [{bearer: []}]
        paths:
          /healthz:
            get:
              summary: Liveness of the hub and its store (no key needed).
              security: []
              responses: {"200": {description: ok}, default: {$ref: "#/components/responses/Error"}}
          /openapi.yaml:
            get:
              summary: This document.
              security: []
              responses: {"200": {description: the API description}, default: {$ref: "#/components/responses/Error"}}
          /metrics:
            get:
              summary: Prometheus metrics of this hub process (the operator key, or the metrics-only key set as metrics_key).
              responses: {"200": {description: text exposition format}, "403": {description: not the operator or metrics key}, default: {$ref: "#/components/responses/Error"}}
          /api/v1/customers:
            post:
              summary: Create a customer (operator).
              requestBody:
                required: true
                content:
                  application/json:
                    schema:
                      type: object
                      required: [name, email, domain]
                      properties:
                        name: {type: string, minLength: 1, maxLength: 100, pattern: '^[^\\x00-\\x1F]*[^\\x00-\\x20][^\\x00-\\x1F]*$'}
                        email: {type: string, maxLength: 254, pattern: '\(emailPattern)'}
                        domain: {type: string, pattern: '^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$'}
                        timezone: {type: string, nullable: true, enum: [\(TimeZone.knownTimeZoneIdentifiers.sorted().joined(separator: ", ")), null], default: Europe/Budapest}
                        language: {type: string, enum: [hu, en, null], default: hu, nullable: true}
              responses:
                "201": {description: "{id}"}
                "400": {description: bad input, content: {application/json: {schema: {$ref: "#/components/schemas/Error"}}}}
                default: {$ref: "#/components/responses/Error"}
            get:
              summary: List customers (operator all; a customer key its own).
              responses: {"200": {description: "{customers: [Customer]}", content: {application/json: {schema: {type: object, required: [customers], properties: {customers: {type: array, items: {$ref: "#/components/schemas/Customer"}}}}}}}, default: {$ref: "#/components/responses/Error"}}
          /api/v1/customers/{id}:
            get:
              summary: One customer with notification preferences (operator or that customer).
              parameters: [{name: id, in: path, required: true, schema: {type: string}}]
              responses: {"200": {description: the customer, content: {application/json: {schema: {$ref: "#/components/schemas/Customer"}}}}, "404": {description: no such customer for this key}, default: {$ref: "#/components/responses/Error"}}
          /api/v1/customers/{id}/notifications:
            put:
              summary: Choose which event types mail the customer (operator or that customer); types null returns to the default.
              parameters: [{name: id, in: path, required: true, schema: {type: string}}]
              requestBody:
                required: true
                content:
                  application/json:
                    schema: {type: object, properties: {types: {type: array, nullable: true, items: {type: string, enum: [\(Hub.customerNotifiableTypes.sorted().joined(separator: ", "))]}}}}
              responses: {"200": {description: the customer}, "400": {description: unknown event type (path names the item)}, default: {$ref: "#/components/responses/Error"}}
          /api/v1/keys/{id}:
            delete:
              summary: Revoke every active key of a host, guest or customer (operator); records keys_revoked.
              parameters: [{name: id, in: path, required: true, schema: {type: string}, description: host, guest or customer id}]
              responses: {"200": {description: "{revoked: N}"}, "404": {description: no active keys}, default: {$ref: "#/components/responses/Error"}}
          /api/v1/customers/{id}/keys:
            post:
              summary: Issue a customer key (operator). The key is shown once.
              parameters: [{name: id, in: path, required: true, schema: {type: string}}]
              responses: {"201": {description: "{api_key}"}, "404": {description: no such customer}, default: {$ref: "#/components/responses/Error"}}
          /api/v1/hosts:
            post:
              summary: Create a host (operator). Returns its key, shown once.
              requestBody:
                required: true
                content:
                  application/json:
                    schema: {type: object, required: [customer_id, name], properties: {customer_id: {type: string}, name: {type: string, minLength: 1, maxLength: 100, pattern: '^[^\\x00-\\x1F]*[^\\x00-\\x20][^\\x00-\\x1F]*$'}}}
              responses: {"201": {description: "{id, api_key}"}, default: {$ref: "#/components/responses/Error"}}
            get:
              summary: List hosts visible to the key.
              responses: {"200": {description: "{hosts: [Host]}", content: {application/json: {schema: {type: object, required: [hosts], properties: {hosts: {type: array, items: {$ref: "#/components/schemas/Host"}}}}}}}, default: {$ref: "#/components/responses/Error"}}
          /api/v1/hosts/{id}:
            get:
              summary: One host with liveness and last report age.
              parameters: [{name: id, in: path, required: true, schema: {type: string}}]
              responses:
                "200": {description: the host, content: {application/json: {schema: {$ref: "#/components/schemas/Host"}}}}
                "404": {description: no such host for this key}
                default: {$ref: "#/components/responses/Error"}
          /api/v1/hosts/{id}/desired:
            get:
              summary: Desired state (operator, the host's own key, its customer). spec is what is published; generation its number; draft the working copy (not shown to host keys).
              parameters: [{name: id, in: path, required: true, schema: {type: string}}]
              responses: {"200": {description: "{host_id, generation, spec, published_at, draft, unpublished_changes, warnings (a host that never reported: capacity not checked)}"}, "404": {description: no such host for this key}, default: {$ref: "#/components/responses/Error"}}
            put:
              summary: Save the draft (operator). Validated; a 400 names the field (e.g. $.guests[0].memory_mb).
              parameters: [{name: id, in: path, required: true, schema: {type: string}}]
              requestBody:
                required: true
                content:
                  application/json:
                    schema: {$ref: "#/components/schemas/DesiredState"}
              responses: {"200": {description: the desired view}, "400": {description: invalid spec}, "409": {description: "unknown_disk: a storage policy names a disk the box never reported; capacity_exceeded: the guests' memory caps or CPU shares exceed what the host can allocate (host_id, resource, requested, allocatable); quota_exceeded: the customer's quota (quota, limit, usage, requested)"}, default: {$ref: "#/components/responses/Error"}}
          /api/v1/hosts/{id}/desired/publish:
            post:
              summary: Publish the draft (operator); bumps desired_generation and wakes the host's long-poll. Never touches apps.
              parameters: [{name: id, in: path, required: true, schema: {type: string}}]
              responses: {"200": {description: "{generation}"}, "409": {description: "no draft to publish, capacity_exceeded or quota_exceeded (as for PUT)"}, default: {$ref: "#/components/responses/Error"}}
          /api/v1/hosts/{id}/requests:
            post:
              summary: >-
                Ask the box for an app-consistent backup or a restore test of one guest now (operator). Published as a new
                generation of the desired state carrying the request; the box fetches it (long-poll) and acts once.
              parameters: [{name: id, in: path, required: true, schema: {type: string}}]
              requestBody:
                required: true
                content:
                  application/json:
                    schema:
                      type: object
                      additionalProperties: false
                      required: [kind, vmid]
                      properties:
                        kind: {type: string, enum: [backup, restore_test]}
                        vmid: {type: integer, minimum: 100, maximum: 999999999}
              responses:
                "202": {description: the request as published, content: {application/json: {schema: {$ref: "#/components/schemas/OperatorRequest"}}}}
                "409": {description: "no published desired state, the guest is not in it, or backups are off (no storage_policy.backup_storage)"}
                default: {$ref: "#/components/responses/Error"}
          /api/v1/hosts/{id}/capacity:
            get:
              summary: "The host's allocatable CPU and memory (ADR 0012: cores × cpu_overcommit; memory − reserved_host_memory_mb − memory_safety_buffer_mb) next to what its desired state uses (draft or published, whichever is larger). Null until the host reports."
              parameters: [{name: id, in: path, required: true, schema: {type: string}}]
              responses: {"200": {description: capacity and usage, content: {application/json: {schema: {$ref: "#/components/schemas/HostCapacity"}}}}, "404": {description: no such host for this key}, default: {$ref: "#/components/responses/Error"}}
          /api/v1/hosts/{id}/drift:
            get:
              summary: Published desired state vs the last host report, per guest (in_sync, differs, missing, unexpected, unknown).
              parameters: [{name: id, in: path, required: true, schema: {type: string}}]
              responses: {"200": {description: desired vs last reported, content: {application/json: {schema: {$ref: "#/components/schemas/Drift"}}}}, default: {$ref: "#/components/responses/Error"}}
          /api/v1/hosts/{id}/report:
            get:
              summary: The host's latest report as the box sent it (operator, its customer, the host itself); 404 before the first one.
              parameters: [{name: id, in: path, required: true, schema: {type: string}}]
              responses: {"200": {description: the latest host report, content: {application/json: {schema: {$ref: "#/components/schemas/HostReport"}}}}, "404": {description: no such host, or no report yet}, default: {$ref: "#/components/responses/Error"}}
          /api/v1/hosts/{id}/volume-snapshots:
            get:
              summary: The host's volume snapshot records in object storage, newest first (operator, its customer, the host itself). Wrapped keys only; the hub cannot decrypt a snapshot.
              parameters:
                - {name: id, in: path, required: true, schema: {type: string}}
                - {name: volume_id, in: query, required: false, schema: {type: string}}
              responses: {"200": {description: "{snapshots: [VolumeSnapshot]}", content: {application/json: {schema: {type: object, required: [snapshots], properties: {snapshots: {type: array, items: {$ref: "#/components/schemas/VolumeSnapshot"}}}}}}}, "404": {description: no such host}, default: {$ref: "#/components/responses/Error"}}
          /api/v1/hosts/{id}/volume-snapshots/deleted:
            post:
              summary: The retention job deleted these snapshots' objects (operator only); their records turn deleted. Ids not found or already deleted are skipped.
              parameters: [{name: id, in: path, required: true, schema: {type: string}}]
              requestBody:
                required: true
                content:
                  application/json:
                    schema:
                      type: object
                      additionalProperties: false
                      required: [snapshot_ids]
                      properties:
                        snapshot_ids: {type: array, maxItems: 1000, items: {type: string, pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$'}}
              responses: {"200": {description: "{marked: N}"}, "404": {description: no such host}, default: {$ref: "#/components/responses/Error"}}
          /api/v1/volume-snapshots:
            post:
              summary: A box records one volume snapshot it uploaded (host key only). The same record again is accepted; another under the same snapshot_id is 409 snapshot_conflict.
              requestBody:
                required: true
                content:
                  application/json:
                    schema:
                      allOf:
                        - {$ref: "#/components/schemas/VolumeSnapshot"}
                        - {properties: {state: {enum: [complete]}}}
              responses: {"200": {description: "{saved: true}"}, "409": {description: snapshot_conflict}, default: {$ref: "#/components/responses/Error"}}
          /api/v1/hosts/{id}/guests:
            post:
              summary: >-
                Register a guest (operator or the host's own key). Returns the guest key, shown once. With
                idempotency_key, asking again re-keys the same guest and revokes its earlier keys.
              parameters: [{name: id, in: path, required: true, schema: {type: string}}]
              requestBody:
                required: true
                content:
                  application/json:
                    schema:
                      type: object
                      required: [name]
                      properties:
                        name: {type: string, minLength: 1, maxLength: 100, pattern: '^[^\\x00-\\x1F]*[^\\x00-\\x20][^\\x00-\\x1F]*$'}
                        idempotency_key: {type: string, pattern: '^[A-Za-z0-9_.:-]{1,128}$', nullable: true}
              responses:
                "201": {description: "{id, api_key}"}
                "409": {description: the host has max_guests_per_host guests}
                default: {$ref: "#/components/responses/Error"}
          /api/v1/hosts/{id}/block:
            post:
              summary: Block a host (operator). Its reports are not stored, its envelopes say blocked, it gets no signed ops.
              parameters: [{name: id, in: path, required: true, schema: {type: string}}]
              responses: {"200": {description: the host, content: {application/json: {schema: {$ref: "#/components/schemas/Host"}}}}, "404": {description: no such host}, default: {$ref: "#/components/responses/Error"}}
          /api/v1/hosts/{id}/unblock:
            post:
              summary: Unblock a host (operator).
              parameters: [{name: id, in: path, required: true, schema: {type: string}}]
              responses: {"200": {description: the host, content: {application/json: {schema: {$ref: "#/components/schemas/Host"}}}}, "404": {description: no such host}, default: {$ref: "#/components/responses/Error"}}
          /api/v1/releases:
            get:
              summary: Every registered release with its roll-out per host (operator only).
              responses: {"200": {description: releases, content: {application/json: {schema: {type: object, required: [releases], properties: {releases: {type: array, items: {$ref: "#/components/schemas/Release"}}}}}}}, default: {$ref: "#/components/responses/Error"}}
            post:
              summary: "Register a release signed with a release key (operator only): manifest is the exact signed canonical JSON, signature its SSHSIG (namespace felhom-release-v1). The hub checks the signature against the key it carries; boxes check it against their pinned release keys. Same manifest and signature again: 200; another release of that component and version: 409 release_exists."
              requestBody:
                required: true
                content:
                  application/json:
                    schema:
                      type: object
                      additionalProperties: false
                      required: [manifest, signature]
                      properties:
                        manifest: {type: string, maxLength: 4096}
                        signature: {type: string, maxLength: 16384}
              responses: {"200": {description: already registered, content: {application/json: {schema: {$ref: "#/components/schemas/Release"}}}}, "201": {description: registered, content: {application/json: {schema: {$ref: "#/components/schemas/Release"}}}}, "400": {description: a signed manifest that does not parse or is not canonical (error.path names the member)}, "403": {description: the signature does not verify over the manifest bytes (signature_refused; checked first)}, "409": {description: release_exists}, default: {$ref: "#/components/responses/Error"}}
          /api/v1/releases/{component}/{version}:
            get:
              summary: One release (operator and host keys; a box verifies manifest and signature itself).
              parameters: [{name: component, in: path, required: true, schema: {type: string, enum: [agent, controller]}}, {name: version, in: path, required: true, schema: {type: string, pattern: '^[0-9]{1,6}\\.[0-9]{1,6}\\.[0-9]{1,6}([-+][0-9A-Za-z.-]{1,64})?$'}}]
              responses: {"200": {description: the release, content: {application/json: {schema: {$ref: "#/components/schemas/Release"}}}}, "404": {description: no such release}, default: {$ref: "#/components/responses/Error"}}
          /api/v1/releases/{component}/{version}/asset:
            get:
              summary: The release's asset (operator and host keys), streamed; 404 until uploaded.
              parameters: [{name: component, in: path, required: true, schema: {type: string, enum: [agent, controller]}}, {name: version, in: path, required: true, schema: {type: string, pattern: '^[0-9]{1,6}\\.[0-9]{1,6}\\.[0-9]{1,6}([-+][0-9A-Za-z.-]{1,64})?$'}}]
              responses: {"200": {description: the asset, content: {application/octet-stream: {schema: {type: string, format: binary}}}}, "404": {description: no such release or no asset yet}, default: {$ref: "#/components/responses/Error"}}
            put:
              summary: "Upload the release's asset (operator only), streamed and stored in chunks. It must have the manifest's size and SHA-256 (422 asset_mismatch; 413 when larger); nothing is kept on failure. 409 asset_exists once uploaded."
              parameters: [{name: component, in: path, required: true, schema: {type: string, enum: [agent, controller]}}, {name: version, in: path, required: true, schema: {type: string, pattern: '^[0-9]{1,6}\\.[0-9]{1,6}\\.[0-9]{1,6}([-+][0-9A-Za-z.-]{1,64})?$'}}]
              requestBody:
                required: true
                content:
                  application/octet-stream:
                    schema: {type: string, format: binary}
              responses: {"200": {description: stored, content: {application/json: {schema: {$ref: "#/components/schemas/Release"}}}}, "404": {description: no such release}, "409": {description: asset_exists}, "413": {description: larger than the manifest says}, "422": {description: size or SHA-256 differ from the manifest}, default: {$ref: "#/components/responses/Error"}}
          /api/v1/releases/{component}/{version}/rollout:
            post:
              summary: "Roll the release out (operator only): stage canary with the canary hosts first, then stage all (every other host with a published desired state, or hosts only). Each host's published desired state (and draft) gets versions[component] = version under a new generation. stage all is refused with 409 canary_pending while a canary host does not run it and 409 canary_failed when one reverted or refused it; 409 asset_missing before the upload."
              parameters: [{name: component, in: path, required: true, schema: {type: string, enum: [agent, controller]}}, {name: version, in: path, required: true, schema: {type: string, pattern: '^[0-9]{1,6}\\.[0-9]{1,6}\\.[0-9]{1,6}([-+][0-9A-Za-z.-]{1,64})?$'}}]
              requestBody:
                required: true
                content:
                  application/json:
                    schema:
                      oneOf:
                        - {type: object, additionalProperties: false, required: [stage, hosts], properties: {stage: {type: string, enum: [canary]}, hosts: {type: array, minItems: 1, maxItems: 1000, items: {type: string}}}}
                        - {type: object, additionalProperties: false, required: [stage], properties: {stage: {type: string, enum: [all]}, hosts: {type: array, minItems: 1, maxItems: 1000, items: {type: string}, nullable: true}}}
              responses: {"200": {description: the hosts published and skipped, content: {application/json: {schema: {type: object, required: [component, version, stage, published, skipped], properties: {component: {type: string}, version: {type: string}, stage: {type: string}, published: {type: array, items: {type: object, required: [host_id, generation], properties: {host_id: {type: string}, generation: {type: integer, minimum: -9223372036854775808, maximum: 9223372036854775807}}}}, skipped: {type: array, items: {type: object, required: [host_id, reason], properties: {host_id: {type: string}, reason: {type: string}}}}}}}}}, "400": {description: bad stage or no canary hosts}, "404": {description: no such release}, "409": {description: canary_pending, canary_failed or asset_missing}, default: {$ref: "#/components/responses/Error"}}
          /api/v1/customers/{id}/quotas:
            get:
              summary: The customer's quotas (null is no limit), its usage over all its hosts, and which quotas it is over (operator only).
              parameters: [{name: id, in: path, required: true, schema: {type: string}}]
              responses: {"200": {description: quotas and usage, content: {application/json: {schema: {$ref: "#/components/schemas/Quotas"}}}}, "404": {description: no such customer}, default: {$ref: "#/components/responses/Error"}}
            put:
              summary: "Replace the customer's quotas (operator only). Null or absent is no limit. A limit below current usage is accepted and flagged in exceeded (nothing is destroyed; changes that would raise that usage are refused with 409 quota_exceeded)."
              parameters: [{name: id, in: path, required: true, schema: {type: string}}]
              requestBody:
                required: true
                content:
                  application/json:
                    schema:
                      type: object
                      additionalProperties: false
                      properties:
                        max_memory_mb: {type: integer, minimum: 0, maximum: 1099511627776, nullable: true}
                        max_guests: {type: integer, minimum: 0, maximum: 1099511627776, nullable: true}
                        max_routes: {type: integer, minimum: 0, maximum: 1099511627776, nullable: true}
                        max_public_ipv4: {type: integer, minimum: 0, maximum: 1099511627776, nullable: true}
              responses: {"200": {description: quotas and usage, content: {application/json: {schema: {$ref: "#/components/schemas/Quotas"}}}}, "400": {description: a limit that is not a whole number ≥ 0 (error.path names it)}, "404": {description: no such customer}, default: {$ref: "#/components/responses/Error"}}
          /api/v1/customers/{id}/guests:
            post:
              summary: "Place a new guest (operator only): on the customer's host with the most free allocatable memory that fits its memory cap and CPU share; written into that host's draft (publish it as usual). vmid optional (the host's next free one). 409 no_capacity names each host's binding resource (hosts); quota_exceeded as for any change."
              parameters: [{name: id, in: path, required: true, schema: {type: string}}]
              requestBody:
                required: true
                content:
                  application/json:
                    schema:
                      type: object
                      additionalProperties: false
                      required: [name, cpu, memory_mb, disk_gb]
                      properties:
                        vmid: {type: integer, minimum: 100, maximum: 999999999}
                        name: {type: string, pattern: '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'}
                        cpu: {type: number, minimum: 0, exclusiveMinimum: true, maximum: 512, multipleOf: 0.01, description: "decimal vCPU (0.25, 0.5, 1, 2), a proportional weight; at most two decimals"}
                        memory_mb: {type: integer, minimum: 16, maximum: 9223372036854775807}
                        disk_gb: {type: integer, minimum: 1, maximum: 499, description: "root disk in GiB; 500 or more would carry bulk data in every backup (the bulk-volume rule)"}
                        run_state: {type: string, enum: [running, stopped, null], default: running, nullable: true}
                        description: {type: string, maxLength: 8192, nullable: true}
                        ephemeral: {type: boolean, default: false, nullable: true}
                        backup: {type: boolean, default: true, nullable: true, description: "false opts the guest out of scheduled backups and restore tests"}
                        cpu_limit: {type: number, minimum: 0, exclusiveMinimum: true, maximum: 8192, multipleOf: 0.01, nullable: true, description: "a hard CPU limit in vCPUs (PVE cpulimit); absent: none, cpu is only a weight"}
                        public_ipv4: {type: boolean, default: false, nullable: true, description: "the guest gets a public IPv4 address (counts against max_public_ipv4)"}
                        mount_points:
                          type: array
                          nullable: true
                          items:
                            type: object
                            additionalProperties: false
                            required: [key, path, size_gb, backup, bulk]
                            properties:
                              key: {type: string, pattern: '^mp([0-9]|[1-9][0-9]|1[0-9][0-9]|2[0-4][0-9]|25[0-5])$'}
                              path: {type: string, pattern: '^/[^,]+$', description: an absolute path other than /, without commas}
                              size_gb: {type: integer, minimum: 1, maximum: 9223372036854775807}
                              backup: {type: boolean}
                              bulk: {type: boolean, description: bulk volumes must have backup=false}
                              backup_enabled: {type: boolean, nullable: true, description: "snapshotted to object storage (default true; docs/object-storage.md)"}
                            allOf:
                              - not: {type: object, required: [bulk, backup], properties: {bulk: {enum: [true]}, backup: {enum: [true]}}}
                              - not: {type: object, required: [size_gb, backup], properties: {size_gb: {minimum: 500}, backup: {enum: [true]}}, description: "a volume of 500 GiB or more is bulk: backup must be false"}
              responses: {"201": {description: where it went and why, content: {application/json: {schema: {$ref: "#/components/schemas/GuestPlacement"}}}}, "400": {description: invalid guest}, "404": {description: no such customer}, "409": {description: "no_capacity, no_hosts, quota_exceeded, or a vmid or name the host already has"}, default: {$ref: "#/components/responses/Error"}}
          /api/v1/customers/{id}/suspend:
            post:
              summary: Suspend a customer (operator). Its hosts are blocked; its customer and guest keys are refused (403).
              parameters: [{name: id, in: path, required: true, schema: {type: string}}]
              responses: {"200": {description: "{id, suspended}", content: {application/json: {schema: {$ref: "#/components/schemas/Suspension"}}}}, "404": {description: no such customer}, default: {$ref: "#/components/responses/Error"}}
          /api/v1/customers/{id}/resume:
            post:
              summary: Resume a suspended customer (operator).
              parameters: [{name: id, in: path, required: true, schema: {type: string}}]
              responses: {"200": {description: "{id, suspended}", content: {application/json: {schema: {$ref: "#/components/schemas/Suspension"}}}}, "404": {description: no such customer}, default: {$ref: "#/components/responses/Error"}}
          /api/v1/host-report:
            post:
              summary: A host agent's report (host keys). Answers with the control envelope.
              requestBody:
                required: true
                content: {application/json: {schema: {$ref: "#/components/schemas/HostReport"}}}
              responses:
                "200": {description: ok, content: {application/json: {schema: {$ref: "#/components/schemas/ControlEnvelope"}}}}
                "400": {description: "report breaks the contract; error.path names the field"}
                "413": {description: body too large}
                "429": {description: "too many requests from this key (per-key token bucket); retry after the Retry-After header's seconds", headers: {Retry-After: {schema: {type: integer, minimum: -9223372036854775808, maximum: 9223372036854775807}}}}
                default: {$ref: "#/components/responses/Error"}
          /api/v1/guest-report:
            post:
              summary: A guest controller's report (guest keys). Answers with its host's control envelope.
              requestBody:
                required: true
                content: {application/json: {schema: {$ref: "#/components/schemas/GuestReport"}}}
              responses:
                "200": {description: ok, content: {application/json: {schema: {$ref: "#/components/schemas/ControlEnvelope"}}}}
                "400": {description: "report breaks the contract; error.path names the field"}
                "429": {description: "too many requests from this key (per-key token bucket); retry after the Retry-After header's seconds", headers: {Retry-After: {schema: {type: integer, minimum: -9223372036854775808, maximum: 9223372036854775807}}}}
                default: {$ref: "#/components/responses/Error"}
          /api/v1/control:
            get:
              summary: Long-poll for a desired-state change (host keys).
              parameters:
                - {name: after_generation, in: query, schema: {type: integer, minimum: 0, maximum: 9223372036854775807}}
                - {name: wait, in: query, schema: {type: integer, minimum: 0, maximum: 55}}
              responses:
                "200": {description: ok, content: {application/json: {schema: {$ref: "#/components/schemas/ControlEnvelope"}}}}
                default: {$ref: "#/components/responses/Error"}
          /api/v1/customers/{id}/geo:
            put:
              summary: Allow only the listed countries to reach the customer's Cloudflare zone (operator). zone_id is needed the first time.
              parameters: [{name: id, in: path, required: true, schema: {type: string}}]
              requestBody:
                required: true
                content:
                  application/json:
                    schema: {type: object, required: [countries], properties: {zone_id: {type: string, pattern: '^[0-9a-fA-F]{32}$', nullable: true}, countries: {type: array, minItems: 1, items: {type: string, pattern: '^[A-Za-z]{2}$', example: HU}}}}
              responses: {"200": {description: "{allowed_countries}"}, "400": {description: bad country or zone id}, "409": {description: "Cloudflare not configured, or no zone recorded yet and none sent"}, "502": {description: Cloudflare refused}, default: {$ref: "#/components/responses/Error"}}
            delete:
              summary: Disable the geo rule (kept, disabled).
              parameters: [{name: id, in: path, required: true, schema: {type: string}}]
              responses: {"200": {description: "{enabled: false}"}, "409": {description: "Cloudflare not configured, or no zone recorded for this customer"}, default: {$ref: "#/components/responses/Error"}}
          /api/v1/customers/{id}/geo/remove-all:
            post:
              summary: Delete every felhom-managed rule of the customer's zone (rules others made are kept).
              parameters: [{name: id, in: path, required: true, schema: {type: string}}]
              responses: {"200": {description: "{removed: N}"}, "409": {description: "Cloudflare not configured, or no zone recorded for this customer"}, default: {$ref: "#/components/responses/Error"}}
          /api/v1/customers/{id}/config-overrides:
            put:
              summary: "The customer's controller-config overrides (operator), deep-merged into the default. Only quiesce.poll_seconds (10-3600), quiesce.max_seconds (60-7200) and watchdog.interval_seconds (5-600) may be set; any other key (paths, endpoints, credentials, fingerprints, quiesce.enabled, stacks.protected) or a Cloudflare credential is a 400 naming its path."
              parameters: [{name: id, in: path, required: true, schema: {type: string}}]
              requestBody:
                required: true
                content:
                  application/json:
                    schema:
                      type: object
                      additionalProperties: false
                      properties:
                        quiesce: {type: object, additionalProperties: false, properties: {poll_seconds: {type: integer, minimum: 10, maximum: 3600}, max_seconds: {type: integer, minimum: 60, maximum: 7200}}}
                        watchdog: {type: object, additionalProperties: false, properties: {interval_seconds: {type: integer, minimum: 5, maximum: 600}}}
              responses: {"200": {description: "{saved: true}"}, "400": {description: "a key the hub may not set, a value out of range, or a Cloudflare credential (error.path names it)"}, default: {$ref: "#/components/responses/Error"}}
          /api/v1/guests/{id}/config:
            get:
              summary: The generated controller config of a guest (operator or the guest's own key); never contains a Cloudflare token.
              parameters: [{name: id, in: path, required: true, schema: {type: string}}]
              responses: {"200": {description: the config}, default: {$ref: "#/components/responses/Error"}}
          /api/v1/guests/{id}/secrets/{bundle}:
            put:
              summary: "A new version of a guest's secret bundle (operator). Sealed at rest (AES-GCM under secrets_key); answers the version and key names, never values. 409 secrets_key_unset when the hub has no secrets_key."
              parameters: [{name: id, in: path, required: true, schema: {type: string}}, {name: bundle, in: path, required: true, schema: {type: string, pattern: "^[a-z0-9_-]{1,64}$"}}]
              requestBody:
                required: true
                content:
                  application/json:
                    schema:
                      type: object
                      required: [secrets]
                      additionalProperties: false
                      properties:
                        secrets:
                          type: object
                          propertyNames: {pattern: "^[A-Z0-9_]+$"}
                          additionalProperties:
                            oneOf:
                              - {type: string}
                              - {type: object, required: [base64], additionalProperties: false, properties: {base64: {type: string, format: byte}}}
              responses: {"200": {description: "{bundle, version, created_at, keys}"}, "400": {description: "a bad bundle name or key, or over 256 KiB (error.path names it)"}, "404": {description: no such guest}, "409": {description: secrets_key_unset}, default: {$ref: "#/components/responses/Error"}}
          /api/v1/guests/{id}/secrets:
            get:
              summary: "The latest version of each of a guest's secret bundles: to the guest's own key with file (base64 of the exact TRC_SECRETS_V1 bytes), to the operator with key names only."
              parameters: [{name: id, in: path, required: true, schema: {type: string}}]
              responses: {"200": {description: "{bundles: [{bundle, version, created_at, file?, keys?}]}"}, "404": {description: no such guest}, default: {$ref: "#/components/responses/Error"}}
          /api/v1/customers/{id}/passphrase:
            post:
              summary: A new retrieval passphrase for the customer (operator), Hungarian words; shown once, stored as PBKDF2-SHA256.
              parameters: [{name: id, in: path, required: true, schema: {type: string}}]
              responses: {"201": {description: "{passphrase}"}, default: {$ref: "#/components/responses/Error"}}
          /api/v1/recovery/{id}:
            put:
              summary: Set the host's disaster-recovery record (operator)
              parameters: [{name: id, in: path, required: true, schema: {type: string}}]
              requestBody:
                required: true
                content:
                  application/json:
                    schema: {type: object, properties: {pbs_namespace: {type: string, nullable: true, minLength: 1, maxLength: 200, pattern: '^[A-Za-z0-9/_-]+$'}, repository_fingerprint: {type: string, nullable: true, pattern: '^([0-9a-f]{2}:){31}[0-9a-f]{2}$'}, wrapped_escrow_key: {type: string, nullable: true, format: byte, pattern: '^([A-Za-z0-9+/]{4}){1,64}$', description: "base64, wrapped by the customer's recovery code"}, tunnel_token_ref: {type: string, nullable: true, maxLength: 200}}}
              responses: {"200": {description: the recovery bundle}, "400": {description: bad field}, default: {$ref: "#/components/responses/Error"}}
            get:
              summary: The recovery bundle (operator, or the host's own key) — identity, tunnel token reference and tunnel (set, fingerprint, tunnel_id; connector_token for the host's own key only), box-reported storage manifest and escrow envelope, PBS namespace and fingerprint, wrapped escrow key, desired guests — from durable sources only.
              parameters: [{name: id, in: path, required: true, schema: {type: string}}]
              responses: {"200": {description: the recovery bundle}, default: {$ref: "#/components/responses/Error"}}
          /api/v1/hosts/{id}/tunnel-token:
            put:
              summary: "Set or replace the host's Cloudflare tunnel connector token (operator): what `cloudflared tunnel token NAME` prints (base64 JSON with a, t, s), not a Cloudflare API token. Sealed at rest with the hub's secrets_key (409 secrets_key_unset without one); handed to the box at enrollment. Records tunnel_token_set (fingerprint only)."
              parameters: [{name: id, in: path, required: true, schema: {type: string}}]
              requestBody:
                required: true
                content:
                  application/json:
                    schema: {type: object, required: [connector_token], additionalProperties: false, properties: {connector_token: {type: string, format: cloudflare-connector-token, description: "what `cloudflared tunnel token NAME` prints: base64 of JSON with a, t and s, at most 4096 characters"}}}
              responses: {"200": {description: the token's view, content: {application/json: {schema: {$ref: "#/components/schemas/TunnelToken"}}}}, "400": {description: not a connector token}, "409": {description: the hub has no secrets_key}, default: {$ref: "#/components/responses/Error"}}
            get:
              summary: Whether the host has a connector token, its fingerprint and tunnel id (operator); with connector_token, the token itself, for the host's own key only.
              parameters: [{name: id, in: path, required: true, schema: {type: string}}]
              responses: {"200": {description: the token's view, content: {application/json: {schema: {$ref: "#/components/schemas/TunnelToken"}}}}, default: {$ref: "#/components/responses/Error"}}
            delete:
              summary: Remove the host's connector token from the hub (operator); records tunnel_token_removed when there was one.
              parameters: [{name: id, in: path, required: true, schema: {type: string}}]
              responses: {"200": {description: "{host_id, set: false}", content: {application/json: {schema: {$ref: "#/components/schemas/TunnelToken"}}}}, default: {$ref: "#/components/responses/Error"}}
          /api/v1/recovery/box:
            post:
              summary: The box reports its storage manifest, the PBS fingerprint it sees and its escrow envelope (host key); kept as box_* columns. The envelope is opaque to the hub (docs/formats.md).
              requestBody:
                required: true
                content:
                  application/json:
                    schema:
                      type: object
                      required: [storage_manifest]
                      properties:
                        storage_manifest: {type: array}
                        pbs_fingerprint: {type: string, nullable: true}
                        wrapped_escrow_key:
                          type: object
                          nullable: true
                          required: [format, kdf, kdf_params, salt, nonce, ciphertext, key_fingerprint, created]
                          properties:
                            format: {type: string, enum: [felhom-escrow-v1]}
                            kdf: {type: string, maxLength: 40}
                            kdf_params: {type: object}
                            salt: {type: string, maxLength: 200}
                            nonce: {type: string, maxLength: 200}
                            ciphertext: {type: string, maxLength: 2000}
                            key_fingerprint: {type: string, maxLength: 200}
                            created: {type: string, maxLength: 64}
              responses: {"200": {description: "{saved: true}"}, default: {$ref: "#/components/responses/Error"}}
          /api/v1/retrieve:
            post:
              summary: A customer fetches their recovery bundle(s) or controller configs with the retrieval passphrase (no bearer key). 5 failed attempts per 15 min lock retrieval (429) and record retrieval_locked.
              security: []
              requestBody:
                required: true
                content:
                  application/json:
                    schema: {type: object, required: [domain, passphrase, what], properties: {domain: {type: string, maxLength: 253}, passphrase: {type: string, maxLength: 512}, what: {type: string, enum: [recovery, config]}}}
              responses: {"200": {description: "{hosts: [bundle]} or {configs: {guest_id: config}}"}, "401": {description: not recognised}, "429": {description: locked}, default: {$ref: "#/components/responses/Error"}}
          /api/v1/hosts/{id}/enrollment:
            post:
              summary: A one-time enrollment token for the host (operator), valid ttl_seconds (default 24 h); earlier unused tokens stop working.
              parameters: [{name: id, in: path, required: true, schema: {type: string}}]
              requestBody:
                required: false
                content:
                  application/json:
                    schema: {type: object, properties: {ttl_seconds: {type: integer, minimum: 60, maximum: 604800, nullable: true}, recovery: {type: boolean, nullable: true, description: "A recovery enrollment token for a replacement box of a host enrolled before: the box holds back provisioning until felhom-agent recover has restored the guests"}}}
              responses: {"201": {description: a one-time token, content: {application/json: {schema: {$ref: "#/components/schemas/EnrollmentToken"}}}}, "409": {description: "never_enrolled: a recovery token for a host that was never enrolled"}, default: {$ref: "#/components/responses/Error"}}
          /api/v1/enroll:
            post:
              summary: A box trades its enrollment token for its host key (no bearer key). Every earlier key of the host is revoked; the token cannot be used again.
              security: []
              requestBody:
                required: true
                content:
                  application/json:
                    schema: {type: object, required: [token], properties: {token: {type: string}}}
              responses: {"201": {description: "{host_id, customer_id, host_name, api_key, recovery?, tunnel_token?} (tunnel_token: the host's connector token when the operator set one)"}, "401": {description: unknown, expired or used token}, default: {$ref: "#/components/responses/Error"}}
          /api/v1/operator-keys:
            post:
              summary: Register an operator SSH public key (operator); role operational (default) or recovery. Used for early signature feedback; agents pin their own keys.
              requestBody:
                required: true
                content:
                  application/json:
                    schema: {type: object, required: [public_key], properties: {public_key: {type: string, format: openssh-public-key, description: OpenSSH line}, role: {type: string, enum: [operational, recovery, null], nullable: true}, name: {type: string, nullable: true, minLength: 1, maxLength: 200, pattern: '^[^\\x00-\\x1F]*[^\\x00-\\x20][^\\x00-\\x1F]*$'}}}
              responses: {"201": {description: the key, content: {application/json: {schema: {$ref: "#/components/schemas/OperatorKey"}}}}, "400": {description: not an accepted key}, "409": {description: already registered}, default: {$ref: "#/components/responses/Error"}}
            get:
              summary: List operator keys (operator).
              responses: {"200": {description: registered keys, content: {application/json: {schema: {type: object, required: [operator_keys], properties: {operator_keys: {type: array, items: {$ref: "#/components/schemas/OperatorKey"}}}}}}}, default: {$ref: "#/components/responses/Error"}}
          /api/v1/signed-ops:
            post:
              summary: Queue a destructive op for signing (operator). The hub builds the canonical blob (nonce, expiry).
              requestBody:
                required: true
                content:
                  application/json:
                    schema:
                      description: >-
                        The op and exactly its parameters (the same rules the CLI and the agent apply): guest ops
                        name the guest's vmid, host ops name none.
                      oneOf:
                        - {type: object, additionalProperties: false, required: [host_id, guest_id, op], properties: {host_id: {$ref: "#/components/schemas/HostID"}, guest_id: {$ref: "#/components/schemas/VMID"}, op: {type: string, enum: [guest.destroy]}, params: {type: object, additionalProperties: false}, ttl_seconds: {$ref: "#/components/schemas/OpTTL"}, key_id: {$ref: "#/components/schemas/KeyID"}}}
                        - {type: object, additionalProperties: false, required: [host_id, guest_id, op, params], properties: {host_id: {$ref: "#/components/schemas/HostID"}, guest_id: {$ref: "#/components/schemas/VMID"}, op: {type: string, enum: [guest.rollback]}, params: {type: object, additionalProperties: false, required: [snapshot], properties: {snapshot: {type: string, pattern: '^[A-Za-z][A-Za-z0-9_-]{0,39}$'}}}, ttl_seconds: {$ref: "#/components/schemas/OpTTL"}, key_id: {$ref: "#/components/schemas/KeyID"}}}
                        - {type: object, additionalProperties: false, required: [host_id, guest_id, op, params], properties: {host_id: {$ref: "#/components/schemas/HostID"}, guest_id: {$ref: "#/components/schemas/VMID"}, op: {type: string, enum: [guest.restore]}, params: {type: object, additionalProperties: false, required: [backup], properties: {backup: {type: string, pattern: '^[A-Za-z][A-Za-z0-9._-]{0,20}:backup/[A-Za-z0-9._+:/-]{1,60}$'}}}, ttl_seconds: {$ref: "#/components/schemas/OpTTL"}, key_id: {$ref: "#/components/schemas/KeyID"}}}
                        - {type: object, additionalProperties: false, required: [host_id, op, params], properties: {host_id: {$ref: "#/components/schemas/HostID"}, op: {type: string, enum: [disk.decommission]}, params: {type: object, additionalProperties: false, required: [disk_uuid], properties: {disk_uuid: {type: string, pattern: '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'}}}, ttl_seconds: {$ref: "#/components/schemas/OpTTL"}, key_id: {$ref: "#/components/schemas/KeyID"}}}
                        - {type: object, additionalProperties: false, required: [host_id, op, params], properties: {host_id: {$ref: "#/components/schemas/HostID"}, op: {type: string, enum: [agent.rollback, controller.rollback]}, params: {type: object, additionalProperties: false, required: [version], properties: {version: {type: string, pattern: '^[0-9]{1,4}\\.[0-9]{1,4}\\.[0-9]{1,4}$'}}}, ttl_seconds: {$ref: "#/components/schemas/OpTTL"}, key_id: {$ref: "#/components/schemas/KeyID"}}}
                        - {type: object, additionalProperties: false, required: [host_id, guest_id, op, params], properties: {host_id: {$ref: "#/components/schemas/HostID"}, guest_id: {$ref: "#/components/schemas/VMID"}, op: {type: string, enum: [volume.restore]}, params: {type: object, additionalProperties: false, required: [volume_id, snapshot_id], properties: {volume_id: {type: string, pattern: '^[A-Za-z][A-Za-z0-9._-]{0,20}:[A-Za-z0-9][A-Za-z0-9._+-]{0,40}$'}, snapshot_id: {type: string, pattern: '^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}$'}}}, ttl_seconds: {$ref: "#/components/schemas/OpTTL"}, key_id: {$ref: "#/components/schemas/KeyID"}}}
              responses: {"201": {description: the op (status pending_signature), content: {application/json: {schema: {$ref: "#/components/schemas/SignedOp"}}}}, "400": {description: bad op}, "409": {description: "key_id_required (no key_id and not exactly one operational key), key_id_unknown (not a registered key), the guest is still desired (destroy), unknown_disk (disk.decommission of a disk the box never reported, or one already decommissioned), or unknown_snapshot (volume.restore of a snapshot the box never recorded complete)"}, default: {$ref: "#/components/responses/Error"}}
            get:
              summary: List ops (operator all; customer and host keys their own). Filters host_id, status.
              parameters: [{name: host_id, in: query, schema: {type: string}}, {name: status, in: query, schema: {type: string, enum: [pending_signature, signed, delivered, applied, rejected, expired]}}]
              responses: {"200": {description: the ops, content: {application/json: {schema: {type: object, required: [signed_ops], properties: {signed_ops: {type: array, items: {$ref: "#/components/schemas/SignedOp"}}}}}}}, default: {$ref: "#/components/responses/Error"}}
          /api/v1/signed-ops/next:
            get:
              summary: The next signed op for the calling host (host key), marked delivered; op is null when none.
              parameters: [{name: exclude, in: query, required: false, description: "comma-separated op ids the box holds back (signed by a key it does not pin yet)", schema: {type: string}}]
              responses: {"200": {description: "{op}"}, default: {$ref: "#/components/responses/Error"}}
          /api/v1/signed-ops/{id}:
            get:
              summary: One op.
              parameters: [{name: id, in: path, required: true, schema: {type: string}}]
              responses: {"200": {description: the op, content: {application/json: {schema: {$ref: "#/components/schemas/SignedOp"}}}}, "404": {description: not found for this key}, default: {$ref: "#/components/responses/Error"}}
          /api/v1/signed-ops/{id}/cancel:
            post:
              summary: Cancel a queued op before it is delivered to its host (operator). Records op_cancelled.
              parameters: [{name: id, in: path, required: true, schema: {type: string}}]
              responses: {"200": {description: the op (cancelled), content: {application/json: {schema: {$ref: "#/components/schemas/SignedOp"}}}}, "404": {description: no such op}, "409": {description: "not_cancellable: already delivered or finished"}, default: {$ref: "#/components/responses/Error"}}
          /api/v1/operator-keys/{id}:
            delete:
              summary: Remove an operator signing key from the hub (operator); remove it from the agents' signers_file too. Records operator_key_removed.
              parameters: [{name: id, in: path, required: true, schema: {type: string}}]
              responses: {"200": {description: the removed key, content: {application/json: {schema: {$ref: "#/components/schemas/OperatorKey"}}}}, "404": {description: no such active key}, default: {$ref: "#/components/responses/Error"}}
          /api/v1/customers/{id}/retrieval-unlock:
            post:
              summary: Lift a customer's retrieval lock-out (operator); a new passphrase lifts it too. Records retrieval_unlocked.
              parameters: [{name: id, in: path, required: true, schema: {type: string}}]
              responses: {"200": {description: "{cleared_failed_attempts}", content: {application/json: {schema: {type: object, required: [cleared_failed_attempts], properties: {cleared_failed_attempts: {type: integer, minimum: -9223372036854775808, maximum: 9223372036854775807}}}}}}, "404": {description: no such customer}, default: {$ref: "#/components/responses/Error"}}
          /api/v1/signed-ops/{id}/signature:
            post:
              summary: Upload the SSHSIG signature (operator); checked against registered keys for early feedback.
              parameters: [{name: id, in: path, required: true, schema: {type: string}}]
              requestBody:
                required: true
                content:
                  application/json:
                    schema: {type: object, required: [signature], properties: {signature: {type: string, format: sshsig-armor, description: "armored SSH SIGNATURE (ssh-keygen -Y sign -n felhom-op-v1)"}}}
              responses: {"200": {description: the op (signed), content: {application/json: {schema: {$ref: "#/components/schemas/SignedOp"}}}}, "400": {description: not an armored SSH signature}, "403": {description: "signature_refused: wrong namespace, key not registered, or it does not verify over this op's blob"}, "409": {description: not pending}, default: {$ref: "#/components/responses/Error"}}
          /api/v1/signed-ops/{id}/result:
            post:
              summary: The agent reports the outcome (host key); records op_applied or op_rejected.
              parameters: [{name: id, in: path, required: true, schema: {type: string}}]
              requestBody:
                required: true
                content:
                  application/json:
                    schema: {type: object, required: [outcome], properties: {outcome: {type: string, enum: [applied, rejected]}, reason: {type: string, nullable: true}}}
              responses: {"200": {description: the op, content: {application/json: {schema: {$ref: "#/components/schemas/SignedOp"}}}}, "409": {description: already finished}, default: {$ref: "#/components/responses/Error"}}
          /api/v1/events:
            post:
              summary: >-
                Record an event (host, guest or operator keys). Hub-only types (node_*, op_applied, op_rejected,
                host_enrolled, keys_revoked, expected_backup_missed, …) are refused (403); a host may post its backup,
                restore-test, provisioning and hardware events, a guest db_dump_* and its own app_* events (400 otherwise).
                The severity of a known type is the hub's; the event's time is the hub's receive time (a client's `at`
                is kept as data.client_at); data is at most 16 KiB. With an idempotency_key, posting again with the same key
                (from the same key holder) records nothing new and answers the event stored the first time.
              requestBody:
                required: true
                content:
                  application/json:
                    schema:
                      type: object
                      required: [type]
                      properties:
                        type: {type: string, pattern: '^[a-z][a-z0-9_]{1,63}$'}
                        severity: {type: string, enum: [info, warning, critical, null], nullable: true}
                        guest_id: {type: string, pattern: '^[A-Za-z0-9_-]{1,64}$', nullable: true}
                        at: {type: string, format: date-time, nullable: true}
                        data: {type: object, nullable: true}
                        idempotency_key: {type: string, pattern: '^[A-Za-z0-9_.:#@-]{1,128}$', nullable: true}
              responses:
                "201": {description: the stored event}
                "400": {description: "bad input; error.path names it"}
                "403": {description: "a hub-only type, or a type this kind of key may not post (the message lists what it may)"}
                "413": {description: data larger than 16 KiB}
                "429": {description: "too many requests from this key (per-key token bucket); retry after the Retry-After header's seconds", headers: {Retry-After: {schema: {type: integer, minimum: -9223372036854775808, maximum: 9223372036854775807}}}}
                default: {$ref: "#/components/responses/Error"}
            get:
              summary: List events visible to the key, newest first (a host key sees its own host's events only).
              parameters:
                - {name: host_id, in: query, schema: {type: string}}
                - {name: type, in: query, schema: {type: string}}
                - {name: since, in: query, schema: {type: string, format: date-time}}
                - {name: limit, in: query, schema: {type: integer, minimum: 1, maximum: 1000}}
              responses: {"200": {description: "{events: [Event]}", content: {application/json: {schema: {type: object, required: [events], properties: {events: {type: array, items: {$ref: "#/components/schemas/Event"}}}}}}}, default: {$ref: "#/components/responses/Error"}}
        """
}

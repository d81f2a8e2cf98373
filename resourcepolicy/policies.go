package resourcepolicy

// The built-in policies. They are written here, not copied, and decide
// exactly as upstream's kbs/sample_policies files (and the kbs-client
// --allow-all, --deny-all and --affirming built-ins) do.

const defaultPolicy = `# KBS resource policy: the default installed at first start.
#
# input               the verified attestation token claims, e.g. for an EAR
#                     token input.submods.cpu0["ear.veraison.annotated-evidence"]
# data.plugin         the first path segment after /kbs/v0/, e.g. "resource"
# data["resource-path"]  the remaining segments, e.g. ["repo", "type", "tag"]
# data.query          the query parameters, e.g. {"version": "1.0.0"}
#
# Releases through the "resource" plugin to any attested TEE except the
# "sample" attester, which proves nothing and exists only for testing.

package policy

default allow = false

plugin = data.plugin

allow if {
	plugin == "resource"
	not input["submods"]["cpu0"]["ear.veraison.annotated-evidence"]["sample"]
}
`

const allowAllPolicy = `# KBS resource policy: every attested requester may read any resource.
package policy

default allow = false

plugin = data.plugin

allow if {
	plugin == "resource"
}
`

const denyAllPolicy = `# KBS resource policy: nothing is released.
package policy

default allow = false
`

const affirmingPolicy = `# KBS resource policy: release only when every EAR submodule is affirming.
package policy

import rego.v1

default allow = false

allow if {
	not any_not_affirming
	count(input.submods) > 0
}

any_not_affirming if {
	some _, submod in input.submods
	submod["ear.status"] != "affirming"
}
`

// DefaultPolicy is the policy stored at first start: the "resource" plugin
// for any TEE but the sample attester.
func DefaultPolicy() []byte { return []byte(defaultPolicy) }

// AllowAllPolicy allows the "resource" plugin unconditionally (kbs-client
// --allow-all).
func AllowAllPolicy() []byte { return []byte(allowAllPolicy) }

// DenyAllPolicy denies everything (kbs-client --deny-all; upstream's
// kbs-client --default sends this one too).
func DenyAllPolicy() []byte { return []byte(denyAllPolicy) }

// AffirmingPolicy allows when the token has at least one submodule and
// every submodule's "ear.status" is "affirming" (kbs-client --affirming).
func AffirmingPolicy() []byte { return []byte(affirmingPolicy) }

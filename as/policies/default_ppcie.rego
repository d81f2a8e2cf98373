# Default attestation policy for the protected-PCIe topology (policy id
# "default_ppcie").
#
# Semantically identical to upstream Trustee's ear_default_policy_ppcie.rego.
# The ppcie class is only produced for a valid PPCIe topology, so its
# configuration is known to be approved; the GPUs and switches of the
# topology are appraised in their own submodules.
package policy

import rego.v1

default hardware := 0

default executables := 0

default configuration := 2

default file_system := 0

default instance_identity := 0

default runtime_opaque := 0

default storage_opaque := 0

default sourced_data := 0

trust_claims := {
	"executables": executables,
	"hardware": hardware,
	"configuration": configuration,
	"file-system": file_system,
	"instance-identity": instance_identity,
	"runtime-opaque": runtime_opaque,
	"storage-opaque": storage_opaque,
	"sourced-data": sourced_data,
}

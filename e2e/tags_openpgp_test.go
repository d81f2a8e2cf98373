//go:build containers_image_openpgp

package e2e

// buildTags are the tags this test binary was built with that change what
// the binaries under test do; TestMain builds them with the same, so the
// data hub the image tests start has image pull whenever those tests exist.
const buildTags = "containers_image_openpgp"

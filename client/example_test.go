package client_test

import (
	"context"
	"fmt"
	"net/http/httptest"

	"github.com/go-trustee/go-trustee/client"
	"github.com/go-trustee/go-trustee/client/fakekbs"
	"github.com/go-trustee/go-trustee/guest/attester/sample"
)

// A guest attests with the (insecure) sample TEE and reads a resource.
func Example() {
	kbs := fakekbs.New(fakekbs.Options{})
	kbs.SetResource("default/key/1", []byte("the secret"))
	srv := httptest.NewServer(kbs)
	defer srv.Close()

	c, err := client.New(client.Options{URL: srv.URL, Attester: &sample.Attester{}})
	if err != nil {
		panic(err)
	}
	secret, err := c.GetResource(context.Background(), "kbs:///default/key/1")
	if err != nil {
		panic(err)
	}
	fmt.Printf("%s\n", secret)
	// Output: the secret
}

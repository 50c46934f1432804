// Command kubecheck validates Kubernetes manifests strictly against the Go API types of
// k8s.io/api, the version that go.mod pins (its minor version names the Kubernetes release:
// k8s.io/api v0.N.x is Kubernetes 1.N).
//
// Each YAML document of the files named on the command line (or of stdin) is decoded
// with the API machinery's strict decoder: an unknown kind or apiVersion, a field that
// the type does not have, a duplicated field or a value of the wrong type fails it. This
// is the check `kubectl apply --validate=strict` makes against a server's schema, done
// offline. It does not run the API server's semantic validation (e.g. label syntax).
//
// Usage: kubecheck [--version] [file ...]. Exit status 1 when any document fails.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsyaml "sigs.k8s.io/yaml"
)

// apiModule is the module whose version names the Kubernetes release checked against.
const apiModule = "k8s.io/api"

// newScheme registers the built-in API groups a chart of ours may render.
func newScheme() (*runtime.Scheme, error) {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		appsv1.AddToScheme, autoscalingv2.AddToScheme, batchv1.AddToScheme, corev1.AddToScheme,
		networkingv1.AddToScheme, policyv1.AddToScheme, rbacv1.AddToScheme, storagev1.AddToScheme,
	} {
		if err := add(scheme); err != nil {
			return nil, err
		}
	}
	return scheme, nil
}

// kubernetesVersion names the release of the linked k8s.io/api, e.g. "1.35 (k8s.io/api v0.35.10)".
func kubernetesVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	for _, dep := range info.Deps {
		if dep.Path == apiModule {
			parts := strings.Split(dep.Version, ".")
			if len(parts) >= 2 {
				return fmt.Sprintf("1.%s (%s %s)", parts[1], apiModule, dep.Version)
			}
			return dep.Version
		}
	}
	return "unknown"
}

// sourceOf returns the "# Source: <template>" line helm writes above each document, if any.
func sourceOf(document []byte) string {
	for _, line := range strings.Split(string(document), "\n") {
		if strings.HasPrefix(line, "# Source: ") {
			return strings.TrimPrefix(line, "# Source: ")
		}
	}
	return ""
}

// checkStream decodes every document of one stream; it reports each failure and returns their count.
func checkStream(name string, stream io.Reader, decoder runtime.Decoder, out io.Writer) (checked, failed int, err error) {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(stream))
	for index := 0; ; index++ {
		document, readErr := reader.Read()
		if errors.Is(readErr, io.EOF) {
			return checked, failed, nil
		}
		if readErr != nil {
			return checked, failed, fmt.Errorf("%s: document %d: %w", name, index, readErr)
		}
		asJSON, convErr := sigsyaml.YAMLToJSON(document)
		if convErr != nil {
			return checked, failed, fmt.Errorf("%s: document %d: %w", name, index, convErr)
		}
		if trimmed := bytes.TrimSpace(asJSON); bytes.Equal(trimmed, []byte("null")) || len(trimmed) == 0 {
			continue // only comments or blank: helm writes these for empty templates
		}
		where := fmt.Sprintf("%s: document %d", name, index)
		if source := sourceOf(document); source != "" {
			where += " (" + source + ")"
		}
		checked++
		obj, kind, decodeErr := decoder.Decode(document, nil, nil)
		if decodeErr != nil {
			failed++
			fmt.Fprintf(out, "FAIL %s: %v\n", where, decodeErr)
			continue
		}
		accessor, ok := obj.(interface{ GetName() string })
		if !ok || accessor.GetName() == "" {
			failed++
			fmt.Fprintf(out, "FAIL %s: %s has no metadata.name\n", where, kind.Kind)
			continue
		}
		fmt.Fprintf(out, "ok   %s/%s\n", kind.Kind, accessor.GetName())
	}
}

func main() {
	args := os.Args[1:]
	if len(args) == 1 && args[0] == "--version" {
		fmt.Println("Kubernetes " + kubernetesVersion())
		return
	}
	scheme, err := newScheme()
	if err != nil {
		fmt.Fprintln(os.Stderr, "kubecheck:", err)
		os.Exit(2)
	}
	decoder := serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()

	checked, failed := 0, 0
	check := func(name string, stream io.Reader) {
		c, f, streamErr := checkStream(name, stream, decoder, os.Stdout)
		checked, failed = checked+c, failed+f
		if streamErr != nil {
			fmt.Fprintln(os.Stdout, "FAIL", streamErr)
			failed++
		}
	}
	if len(args) == 0 {
		check("stdin", os.Stdin)
	}
	for _, path := range args {
		file, openErr := os.Open(path)
		if openErr != nil {
			fmt.Fprintln(os.Stderr, "kubecheck:", openErr)
			os.Exit(2)
		}
		check(path, file)
		file.Close()
	}
	fmt.Printf("%d documents checked against Kubernetes %s, %d failed\n", checked, kubernetesVersion(), failed)
	if failed > 0 || checked == 0 {
		os.Exit(1)
	}
}

package main

import (
	"context"
	"log"

	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

// registration is the kubelet's plugin registration service, the part of
// node-driver-registrar a kubelet needs: the kubelet finds the socket in its
// plugins_registry directory, asks GetInfo, connects to the CSI endpoint
// (NodeGetInfo) and reports the outcome with NotifyRegistrationStatus.
type registration struct {
	registerapi.UnimplementedRegistrationServer

	// endpoint is the CSI socket's path, as the kubelet sees it (the same
	// file system: the driver runs on the host).
	endpoint string
}

// GetInfo describes the driver as a CSI plugin.
func (r *registration) GetInfo(context.Context, *registerapi.InfoRequest) (*registerapi.PluginInfo, error) {
	return &registerapi.PluginInfo{
		Type:              registerapi.CSIPlugin,
		Name:              DriverName,
		Endpoint:          r.endpoint,
		SupportedVersions: []string{"1.0.0"},
	}, nil
}

// NotifyRegistrationStatus logs the kubelet's verdict. Unlike
// node-driver-registrar the driver keeps running when it is refused: the
// kubelet retries when the socket is created again.
func (r *registration) NotifyRegistrationStatus(_ context.Context, s *registerapi.RegistrationStatus) (*registerapi.RegistrationStatusResponse, error) {
	if s.GetPluginRegistered() {
		log.Printf("registered with the kubelet")
	} else {
		log.Printf("the kubelet refused the registration: %s", s.GetError())
	}
	return &registerapi.RegistrationStatusResponse{}, nil
}

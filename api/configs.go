package api

import (
	"context"

	swarmpb "github.com/raftswarm/raftswarm/proto"
)

// Configs work as secrets do (secrets.go), except that nodes may write
// them to disk and mount them at any absolute path.

func toConfig(o *dataObj) *swarmpb.Config { return configKind.object(o).(*swarmpb.Config) }

// CreateConfig stores a new config (version 1) and returns its metadata.
func (s *ControlServer) CreateConfig(ctx context.Context, req *swarmpb.CreateConfigRequest) (*swarmpb.CreateConfigResponse, error) {
	o, err := s.createData(ctx, configKind, req.GetName(), req.GetLabels(), req.GetData())
	if err != nil {
		return nil, err
	}
	return &swarmpb.CreateConfigResponse{Config: toConfig(o)}, nil
}

// GetConfig returns a config's metadata (never its content) and the
// services using it.
func (s *ControlServer) GetConfig(ctx context.Context, req *swarmpb.GetConfigRequest) (*swarmpb.GetConfigResponse, error) {
	o, services, err := s.getData(ctx, configKind, req.GetConfig())
	if err != nil {
		return nil, err
	}
	return &swarmpb.GetConfigResponse{Config: toConfig(o), Services: services}, nil
}

// ListConfigs returns one page of configs' metadata in ID order.
func (s *ControlServer) ListConfigs(ctx context.Context, req *swarmpb.ListConfigsRequest) (*swarmpb.ListConfigsResponse, error) {
	list, next, err := s.listData(ctx, configKind, req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	resp := &swarmpb.ListConfigsResponse{NextPageToken: next}
	for _, o := range list {
		resp.Configs = append(resp.Configs, toConfig(o))
	}
	return resp, nil
}

// UpdateConfig stores a new content and rolls the services using it.
func (s *ControlServer) UpdateConfig(ctx context.Context, req *swarmpb.UpdateConfigRequest) (*swarmpb.UpdateConfigResponse, error) {
	o, rolled, err := s.updateData(ctx, configKind, req.GetConfig(), req.GetData(), req.GetSetLabels(), req.GetLabels())
	if err != nil {
		return nil, err
	}
	return &swarmpb.UpdateConfigResponse{Config: toConfig(o), Services: rolled}, nil
}

// RemoveConfig deletes a config no service uses.
func (s *ControlServer) RemoveConfig(ctx context.Context, req *swarmpb.RemoveConfigRequest) (*swarmpb.RemoveConfigResponse, error) {
	if r, err := s.replayed(ctx); err != nil || r != nil { // requests.go: a resend
		return &swarmpb.RemoveConfigResponse{}, err
	}
	if err := s.removeData(ctx, configKind, req.GetConfig()); err != nil {
		return nil, err
	}
	return &swarmpb.RemoveConfigResponse{}, nil
}

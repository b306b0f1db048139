//! What the lab examples share: the first high-performance adapter, opened with its own
//! limits and the given features (the backend's device is private to the crate).

pub fn open(features: wgpu::Features) -> (wgpu::Adapter, wgpu::Device, wgpu::Queue) {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = wgpu::Backends::PRIMARY;
    let instance = wgpu::Instance::new(desc);
    let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
        power_preference: wgpu::PowerPreference::HighPerformance,
        ..Default::default()
    }))
    .expect("no adapter");
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        required_features: features & adapter.features(),
        required_limits: adapter.limits(),
        ..Default::default()
    }))
    .expect("device");
    (adapter, device, queue)
}

//! Times hand-written variants of the GEMM shader on one square matmul, so that several
//! ideas can be tried in one call on a lent GPU (which has no Rust toolchain).
//!
//! `gemm_lab dump DIR` writes the shipped matmul shader to `DIR/base.wgsl`;
//! `gemm_lab run DIR [N]` times every `DIR/*.wgsl` on an N×N×N matmul (default 4096),
//! each with and without wgpu's runtime checks (bounds checks, loop bounding), and checks
//! sampled outputs against the CPU. A variant uses matmul.wgsl's bindings (uniform
//! `m n k a_stride b_stride batch_offset`, then `a`, `b`, `c`) and may name its entry point
//! and tile edge on its first line: `// entry: NAME tile: 128` (default `matmul_128x128_nn`, 128).
//! `benches/gemm_lab/variants.py DIR` writes the variants timed on 2026-11-22 at 9e29339 (benches/RESULTS.md).
//! `LAB_ONLY=SUBSTRING` times only the files whose path contains it; `LAB_REPS=N` sets the
//! dispatches per timed submission (default 10).

use std::time::Instant;

mod lab;

use wgpu::util::DeviceExt;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("dump") if args.len() == 2 => {
            let dir = std::path::Path::new(&args[1]);
            std::fs::create_dir_all(dir).unwrap();
            std::fs::write(
                dir.join("base.wgsl"),
                fovea_kernels::source::MATMUL.source(),
            )
            .unwrap();
        }
        Some("run") if args.len() >= 2 => {
            let n = args.get(2).map_or(4096, |s| s.parse().expect("N"));
            run(&args[1], n);
        }
        _ => {
            eprintln!("usage: gemm_lab dump DIR | gemm_lab run DIR [N]");
            std::process::exit(2);
        }
    }
}

fn run(dir: &str, n: usize) {
    let (adapter, device, queue) = lab::open(wgpu::Features::empty());
    println!("adapter: {:?}", adapter.get_info().name);

    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rand = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    };
    let a: Vec<f32> = (0..n * n).map(|_| rand()).collect();
    let b: Vec<f32> = (0..n * n).map(|_| rand()).collect();
    let storage = |data: &[f32]| {
        device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: None,
            contents: bytemuck::cast_slice(data),
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        })
    };
    let (ba, bb) = (storage(&a), storage(&b));
    let bc = device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: (n * n * 4) as u64,
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_SRC
            | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let nn = n as u32;
    let params: [u32; 8] = [nn, nn, nn, nn * nn, nn * nn, 0, 0, 0];
    let bp = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: None,
        contents: bytemuck::cast_slice(&params),
        usage: wgpu::BufferUsages::UNIFORM,
    });
    let readback = device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: (n * n * 4) as u64,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });

    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wgsl"))
        .collect();
    files.sort();
    if let Ok(only) = std::env::var("LAB_ONLY") {
        files.retain(|p| p.to_string_lossy().contains(&only));
    }
    for path in files {
        let src = std::fs::read_to_string(&path).unwrap();
        let first = src.lines().next().unwrap_or("");
        let word = |key: &str| {
            first
                .split_whitespace()
                .skip_while(|w| *w != key)
                .nth(1)
                .map(str::to_string)
        };
        let entry = word("entry:").unwrap_or_else(|| "matmul_128x128_nn".into());
        let tile: u32 = word("tile:").map_or(128, |t| t.parse().unwrap());
        for checked in [true, false] {
            let label = format!(
                "{} {}",
                path.file_stem().unwrap().to_string_lossy(),
                if checked { "checked" } else { "unchecked" }
            );
            let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
            let sd = wgpu::ShaderModuleDescriptor {
                label: None,
                source: wgpu::ShaderSource::Wgsl(src.as_str().into()),
            };
            let t0 = Instant::now();
            let module = if checked {
                device.create_shader_module(sd)
            } else {
                // SAFETY: the lab's variants are checked against the CPU below; this is the
                // measurement of what wgpu's inserted checks cost.
                unsafe {
                    device.create_shader_module_trusted(sd, wgpu::ShaderRuntimeChecks::unchecked())
                }
            };
            let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: None,
                layout: None,
                module: &module,
                entry_point: Some(&entry),
                compilation_options: Default::default(),
                cache: None,
            });
            if let Some(e) = pollster::block_on(scope.pop()) {
                println!("{label}: error: {e}");
                continue;
            }
            let compile_ms = t0.elapsed().as_secs_f64() * 1e3;
            let bind = device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout: &pipeline.get_bind_group_layout(0),
                entries: &[
                    wgpu::BindGroupEntry {
                        binding: 0,
                        resource: bp.as_entire_binding(),
                    },
                    wgpu::BindGroupEntry {
                        binding: 1,
                        resource: ba.as_entire_binding(),
                    },
                    wgpu::BindGroupEntry {
                        binding: 2,
                        resource: bb.as_entire_binding(),
                    },
                    wgpu::BindGroupEntry {
                        binding: 3,
                        resource: bc.as_entire_binding(),
                    },
                ],
            });
            let groups = nn.div_ceil(tile);
            let launch = |count: usize| {
                let mut enc = device.create_command_encoder(&Default::default());
                {
                    let mut pass = enc.begin_compute_pass(&Default::default());
                    pass.set_pipeline(&pipeline);
                    pass.set_bind_group(0, &bind, &[]);
                    for _ in 0..count {
                        pass.dispatch_workgroups(groups, groups, 1);
                    }
                }
                queue.submit([enc.finish()]);
                device.poll(wgpu::PollType::wait_indefinitely()).unwrap();
            };
            launch(2);
            let reps: usize = std::env::var("LAB_REPS").map_or(10, |v| v.parse().unwrap());
            let mut ms: Vec<f64> = (0..5)
                .map(|_| {
                    let t = Instant::now();
                    launch(reps);
                    t.elapsed().as_secs_f64() * 1e3 / reps as f64
                })
                .collect();
            ms.sort_by(f64::total_cmp);
            let med = ms[ms.len() / 2];

            let mut enc = device.create_command_encoder(&Default::default());
            enc.copy_buffer_to_buffer(&bc, 0, &readback, 0, (n * n * 4) as u64);
            queue.submit([enc.finish()]);
            readback.slice(..).map_async(wgpu::MapMode::Read, |_| {});
            device.poll(wgpu::PollType::wait_indefinitely()).unwrap();
            let worst = {
                let view = readback.slice(..).get_mapped_range().unwrap();
                let c: &[f32] = bytemuck::cast_slice(&view);
                let mut worst = 0f64;
                for s in 0..512usize {
                    let (i, j) = ((s * 7919) % n, (s * 104_729 + 13) % n);
                    let want: f64 = (0..n)
                        .map(|k| a[i * n + k] as f64 * b[k * n + j] as f64)
                        .sum();
                    worst = worst.max((c[i * n + j] as f64 - want).abs() / (n as f64).sqrt());
                }
                worst
            };
            readback.unmap();
            // Clear C so the next variant cannot pass on this one's output.
            let mut enc = device.create_command_encoder(&Default::default());
            enc.clear_buffer(&bc, 0, None);
            queue.submit([enc.finish()]);
            println!(
                "{label:32} {med:8.3} ms {:6.2} TFLOP/s  err {worst:.2e}  compile {compile_ms:.0} ms",
                2.0 * (n as f64).powi(3) / med / 1e9
            );
        }
    }
}

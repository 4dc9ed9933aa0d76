import { create, createFileRegistry, fromBinary, toBinary, type DescFile, type DescService, type FileRegistry } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema, FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { Code, type ConnectRouter } from "@connectrpc/connect";
import { file_grpc_health_v1_health, Health } from "../gen/grpc/health/v1/health_pb.js";
import * as v1 from "../gen/grpc/reflection/v1/reflection_pb.js";
import * as v1alpha from "../gen/grpc/reflection/v1alpha/reflection_pb.js";

type Request = v1.ServerReflectionRequest;
type Response = v1.ServerReflectionResponse;

/** Collects a file and everything it imports, dependencies first. */
function withDependencies(files: Iterable<DescFile>): DescFile[] {
  const out = new Map<string, DescFile>();
  const visit = (f: DescFile) => {
    if (out.has(f.name)) return;
    for (const d of f.dependencies) visit(d);
    out.set(f.name, f);
  };
  for (const f of files) visit(f);
  return [...out.values()];
}

/**
 * Answers one reflection request from a registry holding the served services' files and their
 * imports. Shared by v1 and v1alpha, whose messages are identical on the wire.
 */
export function answerReflection(registry: FileRegistry, serviceNames: readonly string[], req: Request): Response {
  const res = create(v1.ServerReflectionResponseSchema, { validHost: req.host, originalRequest: req });
  const error = (code: Code, message: string): Response["messageResponse"] => ({
    case: "errorResponse",
    value: create(v1.ErrorResponseSchema, { errorCode: code, errorMessage: message }),
  });
  const files = (file: DescFile | undefined, what: string) => {
    if (!file) {
      res.messageResponse = error(Code.NotFound, `${what} not found`);
      return;
    }
    // The requested file first, then its transitive imports, as grpcurl expects.
    const ordered = withDependencies([file]).reverse();
    res.messageResponse = {
      case: "fileDescriptorResponse",
      value: create(v1.FileDescriptorResponseSchema, {
        fileDescriptorProto: ordered.map((f) => toBinary(FileDescriptorProtoSchema, f.proto)),
      }),
    };
  };
  const r = req.messageRequest;
  switch (r.case) {
    case "listServices":
      res.messageResponse = {
        case: "listServicesResponse",
        value: create(v1.ListServiceResponseSchema, { service: serviceNames.map((name) => ({ name })) }),
      };
      break;
    case "fileByFilename":
      files(registry.getFile(r.value), `file "${r.value}"`);
      break;
    case "fileContainingSymbol": {
      files(findSymbolFile(registry, r.value), `symbol "${r.value}"`);
      break;
    }
    case "fileContainingExtension": {
      const extendee = registry.getMessage(r.value.containingType);
      const ext = extendee ? registry.getExtensionFor(extendee, r.value.extensionNumber) : undefined;
      files(ext?.file, `extension ${r.value.containingType}#${r.value.extensionNumber}`);
      break;
    }
    case "allExtensionNumbersOfType": {
      const numbers: number[] = [];
      for (const t of registry) {
        if (t.kind === "extension" && t.extendee.typeName === r.value) numbers.push(t.number);
      }
      res.messageResponse = {
        case: "allExtensionNumbersResponse",
        value: create(v1.ExtensionNumberResponseSchema, { baseTypeName: r.value, extensionNumber: numbers }),
      };
      break;
    }
    default:
      res.messageResponse = error(Code.InvalidArgument, "empty reflection request");
  }
  return res;
}

function findSymbolFile(registry: FileRegistry, symbol: string): DescFile | undefined {
  const direct = registry.get(symbol);
  if (direct) return direct.file;
  // A method name ("pkg.Service.Method") resolves to its service's file.
  const dot = symbol.lastIndexOf(".");
  if (dot > 0) {
    const parent = registry.getService(symbol.slice(0, dot));
    if (parent?.methods.some((m) => m.name === symbol.slice(dot + 1))) return parent.file;
  }
  return undefined;
}

/**
 * Registers gRPC server reflection (v1 and v1alpha) describing `services`, so tools like grpcurl
 * can list and call them without local proto files.
 */
export function registerReflection(router: ConnectRouter, services: readonly DescService[]): void {
  const allFiles = withDependencies([
    ...services.map((s) => s.file),
    file_grpc_health_v1_health,
    v1.file_grpc_reflection_v1_reflection,
    v1alpha.file_grpc_reflection_v1alpha_reflection,
  ]);
  const registry = createFileRegistry(create(FileDescriptorSetSchema, { file: allFiles.map((f) => f.proto) }));
  const names = [
    ...services.map((s) => s.typeName),
    Health.typeName,
    v1.ServerReflection.typeName,
    v1alpha.ServerReflection.typeName,
  ];
  router.service(v1.ServerReflection, {
    async *serverReflectionInfo(requests) {
      for await (const req of requests) yield answerReflection(registry, names, req);
    },
  });
  router.service(v1alpha.ServerReflection, {
    async *serverReflectionInfo(requests) {
      for await (const req of requests) {
        // Same wire format in both packages: convert through the binary encoding.
        const asV1 = fromBinary(v1.ServerReflectionRequestSchema, toBinary(v1alpha.ServerReflectionRequestSchema, req));
        const answer = answerReflection(registry, names, asV1);
        yield fromBinary(v1alpha.ServerReflectionResponseSchema, toBinary(v1.ServerReflectionResponseSchema, answer));
      }
    },
  });
}

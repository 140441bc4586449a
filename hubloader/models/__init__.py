"""Model families. Importing this package registers every family with the registry."""

from .._gc import torch_import

with torch_import():  # the bulk of this package's import: see hubloader/_gc.py
    import torch  # noqa: F401

from .alm import ALMConfig, ALMForSeq2Seq, ALMModel
from .bert import (BertConfig, BertForMaskedLM, BertForSentenceEmbedding,
                   BertForSequenceClassification, BertForTokenClassification, BertModel,
                   RobertaConfig, RobertaForMaskedLM, RobertaForSentenceEmbedding,
                   RobertaForSequenceClassification, RobertaForTokenClassification, RobertaModel)
from .bert_flagai import (BertForSeq2seq, BertForSequenceLabelingCRF, BertForSequenceLabelingGP,
                          RobertaForSeq2seq, RobertaForSequenceLabelingCRF,
                          RobertaForSequenceLabelingGP)
from .altclip import AltCLIPConfig, AltCLIPModel
from .clip import CLIPConfig, CLIPModel, EVACLIPConfig, EVACLIPModel
from .cpm import CPMConfig, CPMLMHeadModel, CPMModel
from .glm import (GLMConfig, GLMForMultiTokenCloze, GLMForSeq2Seq, GLMForSequenceClassification,
                  GLMForSingleTokenCloze, GLMModel)
from .gpt2 import GPT2Config, GPT2LMHeadModel, GPT2Model
from .llama import (AquilaConfig, AquilaForCausalLM, AquilaModel, LlamaConfig, LlamaForCausalLM,
                    LlamaModel, MistralConfig, MistralForCausalLM, MistralModel, Qwen2Config,
                    Qwen2ForCausalLM, Qwen2Model)
from .opt import (GalacticaConfig, GalacticaForCausalLM, GalacticaModel, OPTConfig,
                  OPTForCausalLM, OPTModel)
from .resnet import ResNetConfig, ResNetForImageClassification, ResNetModel
from .swin import SwinConfig, SwinForImageClassification, SwinModel
from .swinv2 import Swinv2Config, Swinv2ForImageClassification, Swinv2Model
from .t5 import T5Config, T5ForConditionalGeneration, T5Model
from .vit import ViTConfig, ViTForImageClassification, ViTModel

__all__ = ["BertConfig", "BertModel", "BertForSequenceClassification", "BertForTokenClassification",
           "BertForMaskedLM", "BertForSentenceEmbedding", "RobertaConfig", "RobertaModel",
           "RobertaForSequenceClassification", "RobertaForTokenClassification",
           "RobertaForMaskedLM", "RobertaForSentenceEmbedding",
           "BertForSeq2seq", "BertForSequenceLabelingCRF", "BertForSequenceLabelingGP",
           "RobertaForSeq2seq", "RobertaForSequenceLabelingCRF", "RobertaForSequenceLabelingGP",
           "CLIPConfig", "CLIPModel", "EVACLIPConfig", "EVACLIPModel", "AltCLIPConfig",
           "AltCLIPModel",
           "GLMConfig", "GLMModel", "GLMForSeq2Seq", "GLMForSingleTokenCloze",
           "GLMForMultiTokenCloze", "GLMForSequenceClassification",
           "GPT2Config", "GPT2Model", "GPT2LMHeadModel", "CPMConfig", "CPMModel", "CPMLMHeadModel",
           "ALMConfig", "ALMModel", "ALMForSeq2Seq",
           "LlamaConfig", "LlamaModel", "LlamaForCausalLM", "MistralConfig", "MistralModel",
           "MistralForCausalLM", "Qwen2Config", "Qwen2Model", "Qwen2ForCausalLM",
           "AquilaConfig", "AquilaModel", "AquilaForCausalLM",
           "OPTConfig", "OPTModel", "OPTForCausalLM", "GalacticaConfig", "GalacticaModel",
           "GalacticaForCausalLM",
           "ViTConfig", "ViTModel", "ViTForImageClassification",
           "T5Config", "T5Model", "T5ForConditionalGeneration",
           "ResNetConfig", "ResNetModel", "ResNetForImageClassification",
           "SwinConfig", "SwinModel", "SwinForImageClassification",
           "Swinv2Config", "Swinv2Model", "Swinv2ForImageClassification"]
